//! The fault harness over `MemoryStore` and the PostgreSQL queue at
//! `EXACTLY_TEST_POSTGRES_URL`, and a dropped connection mid-stream.
//! `EXACTLY_SCHEDULES` sets the number of schedules, `EXACTLY_SEED` reruns
//! one failing seed.

use std::sync::Arc;
use std::time::Duration;

use exactly::Transport;
use exactly_transport_sql::SqlQueue;
use exactly_transport_testkit::{
    Proxy, fault_harness, memory_store_over, reconnect_mid_stream, server_url,
};

/// Leases that never run out on their own: the harness expires them itself.
const NO_EXPIRY: Duration = Duration::from_secs(1 << 30);

#[tokio::test(flavor = "current_thread")]
async fn postgres_schedules_lose_and_duplicate_nothing() {
    let queue = SqlQueue::connect_postgres(&server_url("EXACTLY_TEST_POSTGRES_URL"))
        .await
        .expect("connect");
    let factory = memory_store_over(move |env, _namespace| {
        let queue = queue.clone().clock(env.clock).visibility_timeout(NO_EXPIRY);
        async move { Arc::new(queue) as Arc<dyn Transport> }
    });
    fault_harness("PostgreSQL", 300, &factory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_reconnects_after_a_dropped_connection() {
    let url = server_url("EXACTLY_TEST_POSTGRES_URL");
    let (proxy, url) = Proxy::in_front_of(&url).await.expect("proxy");
    let queue = SqlQueue::connect_postgres(&url).await.expect("connect");
    let queue = queue.visibility_timeout(Duration::from_secs(1));
    let name = format!("{}reconnect", exactly_transport_testkit::run_prefix());
    reconnect_mid_stream(Arc::new(queue), &name, &proxy).await;
}
