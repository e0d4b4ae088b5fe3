//! The transport conformance suite on a fresh SQLite file per check, with
//! a one-second lease so the lease checks can wait it out.

exactly_conformance::transport_conformance!(|dir| async move {
    let queue = exactly_transport_sql::SqlQueue::open(dir.join("queue.db"))
        .await
        .expect("open");
    queue.visibility_timeout(std::time::Duration::from_secs(1))
});
