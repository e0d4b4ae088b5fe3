//! The transport conformance suite on the NATS server at
//! `EXACTLY_TEST_NATS_URL`, with a one-second lease (`ack_wait`).

exactly_conformance::transport_conformance!(|_| async {
    let url = exactly_transport_testkit::server_url("EXACTLY_TEST_NATS_URL");
    let queue = exactly_transport_nats::NatsQueue::connect(&url)
        .await
        .expect("connect");
    queue.visibility_timeout(std::time::Duration::from_secs(1))
});

/// Bytes another publisher put on the queue's subject, that are no
/// envelope, go to the endpoint as an undecodable message (for its error
/// queue).
#[tokio::test]
async fn foreign_bytes_are_handed_over_undecodable() {
    use exactly_transport_nats::{SUBJECT_PREFIX, async_nats};

    let url = exactly_transport_testkit::server_url("EXACTLY_TEST_NATS_URL");
    let queue = exactly_transport_nats::NatsQueue::connect(&url)
        .await
        .expect("connect");
    // Letters and digits only: the subject is the prefix and the name.
    let name = format!("{}foreign", exactly_transport_testkit::run_prefix());
    let raw = async_nats::connect(&url).await.expect("raw client");
    let subject = format!("{SUBJECT_PREFIX}{name}");
    exactly_transport_testkit::foreign_bytes_are_handed_over(&queue, &name, |bytes| async move {
        raw.publish(subject, bytes.into()).await.expect("publish");
        raw.flush().await.expect("flush");
    })
    .await;
}
