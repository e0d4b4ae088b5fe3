//! The transport conformance suite on the SQS endpoint at
//! `EXACTLY_TEST_SQS_URL` (moto here), with a one-second lease.

mod common;

exactly_conformance::transport_conformance!(|_| async {
    common::queue().visibility_timeout(std::time::Duration::from_secs(1))
});
