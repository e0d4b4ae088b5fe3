//! Quickstart: an `orders` endpoint that handles `PlaceOrder` exactly once
//! and tells `billing` to charge, with every message sent twice on purpose.
//! Store and queue share one SQLite file (`EXACTLY_DB`, default
//! `exactly-quickstart.sqlite` in the system temp dir, recreated each run),
//! so a commit, the messages it sends and its ack are one transaction
//! (`StoreAndQueue`, `colocated`).
//! Run with `cargo run -p quickstart`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use exactly::{
    Context, Endpoint, Handler, HandlerError, Message, Sender, Store, Transport, handler_fn,
};
use exactly_store_sqlite::SqliteStore;
use exactly_transport_sql::StoreAndQueue;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct PlaceOrder {
    order: String,
    cents: u64,
}
impl Message for PlaceOrder {
    const TYPE: &'static str = "PlaceOrder";
}

#[derive(Serialize, Deserialize)]
struct Charge {
    order: String,
    cents: u64,
}
impl Message for Charge {
    const TYPE: &'static str = "Charge";
}

#[derive(Serialize, Deserialize, Default)]
struct Order {
    placed: bool,
    cents: u64,
}

struct Orders;

impl Handler<PlaceOrder> for Orders {
    type State = Order;

    fn entity_key(&self, m: &PlaceOrder) -> String {
        m.order.clone()
    }

    async fn handle(
        &self,
        order: &mut Order,
        m: PlaceOrder,
        ctx: &mut Context,
    ) -> Result<(), HandlerError> {
        order.placed = true;
        order.cents += m.cents;
        // Captured now, sent only after the new state is committed.
        ctx.send(
            "billing",
            &Charge {
                order: m.order,
                cents: m.cents,
            },
        )?;
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let db = fresh_db()?;
    println!("database: {}", db.display());
    // The store and a queue on its pool: one object, passed as the store,
    // the transport and their one transaction.
    let shared = Arc::new(StoreAndQueue::sqlite(SqliteStore::open(&db).await?).await?);
    let store: Arc<dyn Store> = shared.clone();
    let transport: Arc<dyn Transport> = shared.clone();

    let orders = Endpoint::builder("orders", store.clone(), transport.clone())
        .colocated(shared.clone())
        .handler(Orders)
        .build()?;
    let billing = Endpoint::builder("billing", store.clone(), transport.clone())
        .colocated(shared.clone())
        .handler(handler_fn(
            |m: &Charge| m.order.clone(),
            |charged: &mut u64, m: Charge, _ctx| {
                *charged += m.cents;
                Ok(())
            },
        ))
        .build()?;

    let web = Sender::new("web", store.clone(), transport.clone())?.colocated(shared);
    for i in 0..5 {
        let order = PlaceOrder {
            order: format!("order-{i}"),
            cents: 1_000 + i,
        };
        let id = exactly::MessageId::derived("quickstart", &order.order);
        // A client retry: the same intent twice. One message results.
        web.send_with_id(id, "orders", &order).await?;
        web.send_with_id(id, "orders", &order).await?;
        // And the queue delivers it twice, as at-least-once queues may.
        let copy = web.envelope(id, "orders", &order)?;
        transport.send(vec![exactly::Outgoing::new(copy)]).await?;
    }

    // Run both endpoints until every copy is handled (at most 10 s), then
    // shut them down cleanly.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let handled = |e: &Endpoint| {
        let s = e.stats().snapshot();
        s.processed + s.duplicates + s.recovered
    };
    tokio::join!(
        orders.run(stopped(stop_rx.clone())),
        billing.run(stopped(stop_rx.clone())),
        async {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            // Two copies of each order reach `orders`; one charge each reaches `billing`.
            while (handled(&orders) < 10 || handled(&billing) < 5)
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // Extra copies of a charge (two workers finishing one order) may trail.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let _ = stop_tx.send(true);
        },
    );

    // A copy that arrives while the first is still finishing completes the
    // first's work (sends, token) instead of being dropped: "recovered".
    for (name, endpoint) in [("orders: ", &orders), ("billing:", &billing)] {
        let s = endpoint.stats().snapshot();
        println!(
            "{name} processed {}, duplicates dropped {}, recovered {}",
            s.processed, s.duplicates, s.recovered
        );
    }
    for i in 0..5 {
        let key = format!("e/billing/order-{i}");
        let record = store.get(&key).await?.expect("charged");
        let record = exactly::record::EntityRecord::decode(&key, &record.value)?;
        let charged = String::from_utf8_lossy(record.state.as_deref().unwrap_or_default());
        println!("order-{i}: charged {charged} cents (once)");
    }
    Ok(())
}

/// The database file, deleted first (with its WAL files) so each run
/// starts from nothing.
fn fresh_db() -> anyhow::Result<PathBuf> {
    let db = std::env::var_os("EXACTLY_DB").map_or_else(
        || std::env::temp_dir().join("exactly-quickstart.sqlite"),
        PathBuf::from,
    );
    for suffix in ["", "-wal", "-shm"] {
        let mut file = db.clone().into_os_string();
        file.push(suffix);
        match std::fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
    }
    Ok(db)
}
