//! Quickstart: an `orders` endpoint that handles `PlaceOrder` exactly once
//! and tells `billing` to charge, with every message sent twice on purpose.
//! Run with `cargo run -p quickstart`.

use std::sync::Arc;
use std::time::Duration;

use exactly::{
    Context, Endpoint, Handler, HandlerError, MemoryStore, MemoryTransport, Message, Sender, Store,
    Transport, handler_fn,
};
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
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let transport: Arc<dyn Transport> = Arc::new(MemoryTransport::new());

    let orders = Endpoint::builder("orders", store.clone(), transport.clone())
        .handler(Orders)
        .build()?;
    let billing = Endpoint::builder("billing", store.clone(), transport.clone())
        .handler(handler_fn(
            |m: &Charge| m.order.clone(),
            |charged: &mut u64, m: Charge, _ctx| {
                *charged += m.cents;
                Ok(())
            },
        ))
        .build()?;

    let web = Sender::new("web", store.clone(), transport.clone())?;
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

    // Run both endpoints for half a second, then shut them down cleanly.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    tokio::join!(
        orders.run(stopped(stop_rx.clone())),
        billing.run(stopped(stop_rx.clone())),
        async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let _ = stop_tx.send(true);
        },
    );

    let (o, b) = (orders.stats().snapshot(), billing.stats().snapshot());
    println!(
        "orders:  processed {}, duplicates dropped {}",
        o.processed, o.duplicates
    );
    println!(
        "billing: processed {}, duplicates dropped {}",
        b.processed, b.duplicates
    );
    for i in 0..5 {
        let key = format!("e/billing/order-{i}");
        let record = store.get(&key).await?.expect("charged");
        let record = exactly::record::EntityRecord::decode(&key, &record.value)?;
        let charged = String::from_utf8_lossy(record.state.as_deref().unwrap_or_default());
        println!("order-{i}: charged {charged} cents (once)");
    }
    Ok(())
}
