//! The SQS client the tests use: the endpoint in `EXACTLY_TEST_SQS_URL`
//! (moto), credentials and region from the standard `AWS_*` variables.

use exactly_transport_sqs::SqsQueue;
use exactly_transport_testkit::server_url;

/// A queue on the SQS endpoint at `url`.
pub fn queue_at(url: &str) -> SqsQueue {
    SqsQueue::emulator(url)
}

/// A queue on the endpoint in `EXACTLY_TEST_SQS_URL`.
pub fn queue() -> SqsQueue {
    queue_at(&server_url("EXACTLY_TEST_SQS_URL"))
}
