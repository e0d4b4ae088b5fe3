//! The fault harness over `MemoryStore` and SQS at `EXACTLY_TEST_SQS_URL`
//! (moto: slow, so fewer schedules than the other transports), and a
//! dropped connection mid-stream. `EXACTLY_SCHEDULES` sets the number of
//! schedules, `EXACTLY_SEED` reruns one failing seed.

mod common;

use std::sync::Arc;
use std::time::Duration;

use exactly_transport_testkit::{
    Proxy, fault_harness, memory_store_over_shared, reconnect_mid_stream, run_prefix, server_url,
};

#[tokio::test(flavor = "current_thread")]
async fn sqs_schedules_lose_and_duplicate_nothing() {
    // SQS's longest lease: the harness expires leases itself.
    let queue = common::queue().visibility_timeout(exactly_transport_sqs::MAX_VISIBILITY);
    // One connection for the run; each schedule drops the previous one's
    // queues, so the server does not pile them up.
    let factory = memory_store_over_shared(queue, |queue, name| async move {
        queue.delete_queue(&name).await
    });
    fault_harness("SQS (moto)", 100, &factory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_reconnects_after_a_dropped_connection() {
    let (proxy, url) = Proxy::in_front_of(&server_url("EXACTLY_TEST_SQS_URL"))
        .await
        .expect("proxy");
    let queue = common::queue_at(&url).visibility_timeout(Duration::from_secs(1));
    let name = format!("{}reconnect", run_prefix());
    reconnect_mid_stream(Arc::new(queue), &name, &proxy).await;
}
