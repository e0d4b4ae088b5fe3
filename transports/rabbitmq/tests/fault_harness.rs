//! The fault harness over `MemoryStore` and RabbitMQ at
//! `EXACTLY_TEST_RABBITMQ_URL`, and a connection dropped mid-stream (every
//! TCP connection reset through a proxy: a broker restart seen from the
//! client, without wiping the test broker). `EXACTLY_SCHEDULES` sets the
//! number of schedules, `EXACTLY_SEED` reruns one failing seed.

use std::sync::Arc;
use std::time::Duration;

use exactly_transport_rabbitmq::RabbitQueue;
use exactly_transport_testkit::{
    Proxy, fault_harness, memory_store_over_shared, reconnect_mid_stream, run_prefix, server_url,
};

#[tokio::test(flavor = "current_thread")]
async fn rabbitmq_schedules_lose_and_duplicate_nothing() {
    let queue = RabbitQueue::connect(&server_url("EXACTLY_TEST_RABBITMQ_URL"))
        .await
        .expect("connect")
        // Leases that never run out: the harness expires them itself.
        .visibility_timeout(Duration::MAX);
    // One connection for the run; each schedule drops the previous one's
    // queues, so the server does not pile them up.
    let factory = memory_store_over_shared(queue, |queue, name| async move {
        queue.delete_queue(&name).await
    });
    fault_harness("RabbitMQ", 300, &factory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_reconnects_after_a_dropped_connection() {
    let (proxy, url) = Proxy::in_front_of(&server_url("EXACTLY_TEST_RABBITMQ_URL"))
        .await
        .expect("proxy");
    let queue = RabbitQueue::connect(&url).await.expect("connect");
    let queue = queue.visibility_timeout(Duration::from_secs(1));
    let name = format!("{}reconnect", run_prefix());
    reconnect_mid_stream(Arc::new(queue), &name, &proxy).await;
}
