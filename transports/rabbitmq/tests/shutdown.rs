//! Graceful shutdown on RabbitMQ at `EXACTLY_TEST_RABBITMQ_URL`: closing
//! the connection hands unacked deliveries back at once (not after a
//! lease), and the next call connects again.

use std::time::Duration;

use exactly::{Outgoing, Transport};
use exactly_transport_rabbitmq::RabbitQueue;
use exactly_transport_testkit::{probe, run_prefix, server_url};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_returns_unacked_deliveries_at_once() {
    let queue = RabbitQueue::connect(&server_url("EXACTLY_TEST_RABBITMQ_URL"))
        .await
        .expect("connect")
        .visibility_timeout(Duration::from_secs(3600));
    let name = format!("{}shutdown", run_prefix());
    let envelope = probe(&name, 1);
    queue
        .send(vec![Outgoing::new(envelope.clone())])
        .await
        .expect("send");
    let first = queue
        .receive(&name, 1, Duration::from_secs(5))
        .await
        .expect("receive");
    assert_eq!(first.len(), 1, "the message arrives");

    queue.close().await;
    let again = queue
        .receive(&name, 1, Duration::from_secs(5))
        .await
        .expect("receive");
    assert_eq!(
        again.len(),
        1,
        "the unacked message is back without waiting an hour"
    );
    assert_eq!(again[0].envelope, envelope);
    assert!(again[0].delivery_count >= 2, "counted as a redelivery");
    queue
        .ack(&first[0].receipt)
        .await
        .expect("a receipt of the closed connection is a no-op");
    queue.ack(&again[0].receipt).await.expect("ack");
    queue.delete_queue(&name).await.expect("delete");
}
