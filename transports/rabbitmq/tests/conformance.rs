//! The transport conformance suite on the RabbitMQ broker at
//! `EXACTLY_TEST_RABBITMQ_URL`, with a one-second lease.

exactly_conformance::transport_conformance!(|_| async {
    let url = exactly_transport_testkit::server_url("EXACTLY_TEST_RABBITMQ_URL");
    let queue = exactly_transport_rabbitmq::RabbitQueue::connect(&url)
        .await
        .expect("connect");
    queue.visibility_timeout(std::time::Duration::from_secs(1))
});
