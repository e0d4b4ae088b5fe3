//! The transport conformance suite: on a fresh SQLite file per check, and
//! (feature `postgres`) on the PostgreSQL server at
//! `EXACTLY_TEST_POSTGRES_URL`; both with a one-second lease so the lease
//! checks can wait it out.

use std::time::Duration;

use exactly::Transport;
use exactly_transport_sql::SqlQueue;

exactly_conformance::transport_conformance!(|dir| async move {
    let queue = SqlQueue::open(dir.join("queue.db")).await.expect("open");
    queue.visibility_timeout(Duration::from_secs(1))
});

/// A row some other writer put in the table, that is no envelope, goes to
/// the endpoint as an undecodable message.
#[tokio::test]
async fn a_foreign_row_is_handed_over_undecodable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("queue.db");
    let queue = SqlQueue::open(&path).await.expect("open");
    let url = format!("sqlite://{}", path.display());
    let raw = sqlx::SqlitePool::connect(&url).await.expect("raw pool");
    exactly_transport_testkit::foreign_bytes_are_handed_over(&queue, "inbox", |bytes| async move {
        sqlx::query(
            "INSERT INTO exactly_queue (queue, envelope, visible_at) VALUES ('inbox', ?1, 0)",
        )
        .bind(bytes)
        .execute(&raw)
        .await
        .expect("raw insert");
    })
    .await;
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use exactly_transport_testkit::server_url;

    exactly_conformance::transport_conformance!(|_| async {
        let url = server_url("EXACTLY_TEST_POSTGRES_URL");
        let queue = SqlQueue::connect_postgres(&url).await.expect("connect");
        queue.visibility_timeout(Duration::from_secs(1))
    });

    #[tokio::test]
    async fn a_foreign_row_is_handed_over_undecodable() {
        let url = server_url("EXACTLY_TEST_POSTGRES_URL");
        let queue = SqlQueue::connect_postgres(&url).await.expect("connect");
        let raw = sqlx::PgPool::connect(&url).await.expect("raw pool");
        let name = format!("{}foreign", exactly_transport_testkit::run_prefix());
        let target = name.clone();
        exactly_transport_testkit::foreign_bytes_are_handed_over(
            &queue,
            &name,
            |bytes| async move {
                sqlx::query(
                    "INSERT INTO exactly_queue (queue, envelope, visible_at) VALUES ($1, $2, 0)",
                )
                .bind(target)
                .bind(bytes)
                .execute(&raw)
                .await
                .expect("raw insert");
            },
        )
        .await;
    }

    /// Leases and acks commit without waiting for a WAL flush, through a
    /// setting local to their own transaction: the session they ran on
    /// keeps the server's `synchronous_commit` for what comes next (a send,
    /// a store's commit on a shared pool).
    #[tokio::test]
    async fn relaxed_commits_stay_inside_their_statement() {
        let url = server_url("EXACTLY_TEST_POSTGRES_URL");
        // Durable sessions, whatever the test server's default.
        let options = exactly_store_postgres::connect_options(&url)
            .expect("url")
            .options([("synchronous_commit", "on")]);
        let pool = exactly_store_postgres::pool_options()
            .max_connections(3)
            .acquire_timeout(Duration::from_millis(500))
            .connect_with(options)
            .await
            .expect("connect");
        let queue = SqlQueue::from_pg_pool(pool.clone()).await.expect("queue");
        let name = format!("{}relaxed", exactly_transport_testkit::run_prefix());
        let envelope = exactly_transport_testkit::probe(&name, 1);
        queue
            .send(vec![exactly::Outgoing::new(envelope)])
            .await
            .expect("send");
        let got = queue
            .receive(&name, 1, Duration::from_secs(5))
            .await
            .expect("receive");
        assert_eq!(got.len(), 1, "the message sent");
        queue.ack(&got[0].receipt).await.expect("ack");
        // Every session of the pool (held until the pool has no more),
        // whichever ran the lease and the ack.
        let mut sessions = Vec::new();
        while let Ok(mut session) = pool.acquire().await {
            let after: String = sqlx::query_scalar("SHOW synchronous_commit")
                .fetch_one(&mut *session)
                .await
                .expect("show");
            assert_eq!(after, "on", "a session's setting after a lease and an ack");
            sessions.push(session);
        }
        assert!(!sessions.is_empty(), "the pool's sessions were checked");
        drop(sessions);
        assert!(
            queue
                .receive(&name, 1, Duration::ZERO)
                .await
                .expect("receive")
                .is_empty(),
            "the ack deleted the message"
        );
    }
}
