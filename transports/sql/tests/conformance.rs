//! The transport conformance suite: on a fresh SQLite file per check, and
//! (feature `postgres`) on the PostgreSQL server at
//! `EXACTLY_TEST_POSTGRES_URL`; both with a one-second lease so the lease
//! checks can wait it out.

use std::time::Duration;

use exactly_transport_sql::SqlQueue;

exactly_conformance::transport_conformance!(|dir| async move {
    let queue = SqlQueue::open(dir.join("queue.db")).await.expect("open");
    queue.visibility_timeout(Duration::from_secs(1))
});

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use exactly_transport_testkit::server_url;

    exactly_conformance::transport_conformance!(|_| async {
        let url = server_url("EXACTLY_TEST_POSTGRES_URL");
        let queue = SqlQueue::connect_postgres(&url).await.expect("connect");
        queue.visibility_timeout(Duration::from_secs(1))
    });
}
