//! The transport conformance suite on the NATS server at
//! `EXACTLY_TEST_NATS_URL`, with a one-second lease (`ack_wait`).

exactly_conformance::transport_conformance!(|_| async {
    let url = exactly_transport_testkit::server_url("EXACTLY_TEST_NATS_URL");
    let queue = exactly_transport_nats::NatsQueue::connect(&url)
        .await
        .expect("connect");
    queue.visibility_timeout(std::time::Duration::from_secs(1))
});
