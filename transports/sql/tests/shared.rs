//! `StoreAndQueue`, the store and the queue in one database: the
//! `Colocated` conformance suite (and the store and transport suites, as
//! it is both) on a fresh SQLite file per check and (feature `postgres`)
//! on the PostgreSQL server at `EXACTLY_TEST_POSTGRES_URL`; and an endpoint
//! and a sender on it, end to end.

use std::sync::Arc;
use std::time::Duration;

use exactly::record::EntityRecord;
use exactly::{Endpoint, MessageId, Outcome, Outgoing, Sender, Store, Transport, handler_fn};
use exactly_store_sqlite::SqliteStore;
use exactly_transport_sql::StoreAndQueue;
use serde::{Deserialize, Serialize};

async fn sqlite(dir: std::path::PathBuf) -> StoreAndQueue {
    let store = SqliteStore::open(dir.join("app.db")).await.expect("open");
    let db = StoreAndQueue::sqlite(store).await.expect("queue");
    db.with_queue(|q| q.visibility_timeout(Duration::from_secs(1)))
}

exactly_conformance::colocated_conformance!(sqlite);
exactly_conformance::store_conformance!(sqlite);
exactly_conformance::transport_conformance!(sqlite);

#[derive(Serialize, Deserialize)]
struct Deposit {
    account: String,
    cents: u64,
}

impl exactly::Message for Deposit {
    const TYPE: &'static str = "test.Deposit";
}

/// Messages sent by a `Sender` and handled by an endpoint, both through
/// the one transaction: every deposit applied once, each delivery acked by
/// its commit (nothing left on the queue), and a redelivered copy dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_on_one_database_applies_each_message_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Arc::new(sqlite(dir.path().to_owned()).await);
    let sender = Sender::new("web", db.clone(), db.clone())
        .expect("name")
        .colocated(db.clone());
    let endpoint = Endpoint::builder("accounts", db.clone(), db.clone())
        .colocated(db.clone())
        .handler(handler_fn(
            |m: &Deposit| m.account.clone(),
            |balance: &mut u64, m: Deposit, _ctx| {
                *balance += m.cents;
                Ok(())
            },
        ))
        .build()
        .expect("endpoint");
    let mut copy = None;
    for n in 0..20 {
        let deposit = Deposit {
            account: format!("a{}", n % 4),
            cents: 100,
        };
        let id = MessageId::derived("shared-test", &n.to_string());
        let envelope = sender.envelope(id, "accounts", &deposit).expect("envelope");
        copy.get_or_insert_with(|| envelope.clone());
        sender.send_envelopes(vec![envelope]).await.expect("send");
    }
    for _ in 0..20 {
        let delivery = endpoint
            .receive_one()
            .await
            .expect("receive")
            .expect("a message");
        assert_eq!(endpoint.handle_delivery(delivery).await, Outcome::Processed);
    }
    let left = db
        .receive("accounts", 10, Duration::ZERO)
        .await
        .expect("receive");
    assert!(left.is_empty(), "every message was acked by its commit");

    // A copy of the first message, as a broker's redelivery would bring it.
    let copy = copy.expect("a message was sent");
    db.send(vec![Outgoing::new(copy)])
        .await
        .expect("send the copy");
    let delivery = endpoint
        .receive_one()
        .await
        .expect("receive")
        .expect("the copy");
    assert_eq!(endpoint.handle_delivery(delivery).await, Outcome::Duplicate);
    for n in 0..4 {
        let key = format!("e/accounts/a{n}");
        let found = db.get(&key).await.expect("get").expect("the account");
        let record = EntityRecord::decode(&key, &found.value).expect("record");
        let balance: u64 = serde_json::from_slice(&record.state.expect("state")).expect("json");
        assert_eq!(balance, 500, "a{n}: five deposits of 100, each once");
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use exactly_transport_testkit::server_url;

    async fn postgres(_: std::path::PathBuf) -> StoreAndQueue {
        let url = server_url("EXACTLY_TEST_POSTGRES_URL");
        let store = exactly_store_postgres::PostgresStore::connect(&url)
            .await
            .expect("connect");
        let db = StoreAndQueue::postgres(store).await.expect("queue");
        db.with_queue(|q| q.visibility_timeout(Duration::from_secs(1)))
    }

    exactly_conformance::colocated_conformance!(postgres);
}
