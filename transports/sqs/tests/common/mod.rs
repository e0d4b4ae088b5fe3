//! The SQS client the tests use: the endpoint in `EXACTLY_TEST_SQS_URL`
//! (moto), credentials and region from the standard `AWS_*` variables.

use exactly_transport_sqs::SqsQueue;
use exactly_transport_sqs::aws_sdk_sqs::config::{Credentials, Region};
use exactly_transport_sqs::aws_sdk_sqs::{Client, Config};
use exactly_transport_testkit::server_url;

/// A queue on the SQS endpoint at `url`.
pub fn queue_at(url: &str) -> SqsQueue {
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let credentials = Credentials::new(
        var("AWS_ACCESS_KEY_ID", "testing"),
        var("AWS_SECRET_ACCESS_KEY", "testing"),
        None,
        None,
        "tests",
    );
    let config = Config::builder()
        .behavior_version_latest()
        .region(Region::new(var("AWS_REGION", "us-east-1")))
        .credentials_provider(credentials)
        .endpoint_url(url)
        .build();
    SqsQueue::new(Client::from_conf(config))
}

/// A queue on the endpoint in `EXACTLY_TEST_SQS_URL`.
pub fn queue() -> SqsQueue {
    queue_at(&server_url("EXACTLY_TEST_SQS_URL"))
}
