//! The transport conformance suite on the RabbitMQ broker at
//! `EXACTLY_TEST_RABBITMQ_URL`, with a one-second lease.

exactly_conformance::transport_conformance!(|_| async {
    let url = exactly_transport_testkit::server_url("EXACTLY_TEST_RABBITMQ_URL");
    let queue = exactly_transport_rabbitmq::RabbitQueue::connect(&url)
        .await
        .expect("connect");
    queue.visibility_timeout(std::time::Duration::from_secs(1))
});

/// Bytes another publisher put on the queue, that are no envelope, go to
/// the endpoint as an undecodable message (for its error queue).
#[tokio::test]
async fn foreign_bytes_are_handed_over_undecodable() {
    use lapin::options::BasicPublishOptions;
    use lapin::{BasicProperties, Connection, ConnectionProperties};

    let url = exactly_transport_testkit::server_url("EXACTLY_TEST_RABBITMQ_URL");
    let queue = exactly_transport_rabbitmq::RabbitQueue::connect(&url)
        .await
        .expect("connect");
    let name = format!("{}foreign", exactly_transport_testkit::run_prefix());
    let raw = Connection::connect(&url, ConnectionProperties::default())
        .await
        .expect("raw connection");
    let channel = raw.create_channel().await.expect("channel");
    let target = name.clone();
    exactly_transport_testkit::foreign_bytes_are_handed_over(&queue, &name, |bytes| async move {
        channel
            .basic_publish(
                "".into(),
                target.as_str().into(),
                BasicPublishOptions::default(),
                &bytes,
                BasicProperties::default(),
            )
            .await
            .expect("publish");
    })
    .await;
    queue.delete_queue(&name).await.expect("delete");
    raw.close(200, "done".into()).await.expect("close");
}
