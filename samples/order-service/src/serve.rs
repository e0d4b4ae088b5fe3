//! Runs one role (or all of them) until Ctrl-C / SIGTERM, then stops
//! gracefully: the listener stops accepting and finishes requests in
//! flight, endpoints stop receiving and finish the deliveries they hold.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use exactly::{BlobCollector, Endpoint};
use exactly_http::IntentFront;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::backend::{self, Location};
use crate::config::{Common, Role, ServeArgs};
use crate::payments::Provider;
use crate::wiring::Deps;
use crate::{api, billing, metrics, orders, shipping};

/// Default data directory of the serving roles.
pub const DEFAULT_DATA_DIR: &str = "target/order-service-data";

/// A shutdown signal every task can wait on.
#[derive(Clone, Debug)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// Fires on SIGINT (Ctrl-C) or SIGTERM, and when standard input
    /// closes if `stdin_eof`.
    pub fn on_signals(stdin_eof: bool) -> anyhow::Result<Self> {
        let (tx, rx) = watch::channel(false);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let eof = async move {
            if !stdin_eof {
                return std::future::pending().await;
            }
            let mut stdin = tokio::io::stdin();
            let mut buf = [0u8; 64];
            while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
        };
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
                () = eof => {}
            }
            info!("shutting down: finishing work in flight");
            let _ = tx.send(true);
        });
        Ok(Self(rx))
    }

    /// Completes once the signal fired.
    pub fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.0.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    }
}

/// Serves `args.role` until a signal.
pub async fn serve(args: ServeArgs, common: Common) -> anyhow::Result<()> {
    let data_dir = common
        .data_dir
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    if args.fresh && data_dir.exists() {
        std::fs::remove_dir_all(&data_dir)
            .with_context(|| format!("removing {}", data_dir.display()))?;
    }
    let shutdown = Shutdown::on_signals(args.stop_on_stdin_eof)?;
    let role = args.role;
    let mut tasks = tokio::task::JoinSet::new();

    if role == Role::Payments {
        let (listener, url) = bind(args.listen_addr()).await?;
        println!("fake payment provider listening on {url} (POST /charges, GET /stats)");
        let router = Provider::new(args.payment_failure_rate).router();
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown.wait())
            .await?;
        info!("stopped cleanly");
        return Ok(());
    }

    let mut payments_url = args.payments_url.clone();
    if role == Role::All && payments_url.is_none() {
        let (listener, url) = bind(args.payments_listen).await?;
        info!(%url, "fake payment provider started in-process");
        let router = Provider::new(args.payment_failure_rate).router();
        let stop = shutdown.wait();
        tasks.spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(stop)
                .await
                .context("payment provider")
        });
        payments_url = Some(url);
    }

    let store = match &args.store {
        Some(text) => Location::parse(text)?,
        None => Location::Sqlite(data_dir.join("exactly.sqlite")),
    };
    let transport = args.transport.as_deref().map(Location::parse).transpose()?;
    let blob_dir = args.blobs.clone().unwrap_or_else(|| data_dir.join("blobs"));
    let lease = Duration::from_secs(args.lease_secs.max(1));
    let backend = backend::open(&store, transport.as_ref(), &blob_dir, lease).await?;
    let deps = Deps {
        store: backend.store.clone(),
        transport: backend.transport.clone(),
        blobs: backend.blobs.clone(),
        concurrency: args.concurrency.max(1),
        sweep_interval: Duration::from_secs(args.sweep_secs.max(1)),
        payments_url,
        colocated: backend.colocated.clone(),
    };

    let mut endpoints: Vec<Endpoint> = Vec::new();
    if matches!(role, Role::All | Role::Orders) {
        endpoints.push(orders::endpoint(&deps)?);
    }
    if matches!(role, Role::All | Role::Billing) {
        endpoints.push(billing::endpoint(&deps)?);
    }
    if matches!(role, Role::All | Role::Shipping) {
        endpoints.push(shipping::endpoint(&deps)?);
    }
    let mut router = metrics::routes(role.name(), endpoints.clone());
    let serves_api = matches!(role, Role::All | Role::Api);
    if serves_api {
        let front = IntentFront::new(deps.store.clone(), deps.transport.clone());
        router = router.merge(api::routes(
            front.clone(),
            deps.store.clone(),
            deps.blobs.clone(),
        ));
        let stop = shutdown.wait();
        tasks.spawn(async move {
            front.run(stop).await; // sends stranded intents, expires old ones
            Ok(())
        });
    }
    for endpoint in &endpoints {
        let (endpoint, stop) = (endpoint.clone(), shutdown.wait());
        tasks.spawn(async move {
            endpoint.run(stop).await;
            Ok(())
        });
    }
    if matches!(role, Role::All | Role::Orders) && args.gc_secs > 0 {
        let collector = BlobCollector::new(deps.store.clone(), deps.blobs.clone())
            .grace(Duration::from_secs(args.gc_grace_secs));
        let every = Duration::from_secs(args.gc_secs);
        tasks.spawn(collect(collector, every, shutdown.wait()));
    }

    let (listener, url) = bind(args.listen_addr()).await?;
    let stop = shutdown.wait();
    tasks.spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(stop)
            .await
            .context("HTTP listener")
    });
    banner(role, &url, serves_api, &store);
    info!(role = role.name(), %url, pid = std::process::id(), "serving");

    let mut failed = None;
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done.map_err(anyhow::Error::from).and_then(|r| r) {
            warn!(error = %e, "task failed");
            failed.get_or_insert(e);
        }
    }
    for endpoint in &endpoints {
        let s = endpoint.stats().snapshot();
        info!(
            endpoint = endpoint.name(),
            processed = s.processed,
            duplicates = s.duplicates,
            recovered = s.recovered,
            conflicts = s.conflicts,
            retries = s.retries,
            error_queued = s.error_queued,
            swept = s.swept,
            "endpoint totals"
        );
    }
    match failed {
        Some(e) => Err(e),
        None => {
            info!("stopped cleanly");
            Ok(())
        }
    }
}

async fn bind(addr: std::net::SocketAddr) -> anyhow::Result<(TcpListener, String)> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let url = format!("http://{}", listener.local_addr()?);
    Ok((listener, url))
}

async fn collect(
    collector: BlobCollector,
    every: Duration,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return Ok(()),
            () = tokio::time::sleep(every) => {}
        }
        match collector.collect_once().await {
            Ok(report) if report.deleted > 0 => info!(?report, "blob collector deleted garbage"),
            Ok(_) => {}
            Err(e) => warn!(error = %e, "blob collection failed; will retry"),
        }
    }
}

fn banner(role: Role, url: &str, serves_api: bool, store: &Location) {
    let store = match store {
        Location::Sqlite(path) => format!("SQLite file {}", path.display()),
        Location::Postgres(_) => "PostgreSQL".to_owned(),
        Location::Amqp(_) => "RabbitMQ".to_owned(),
        Location::Nats(_) => "NATS JetStream".to_owned(),
    };
    println!(
        "order-service ({}) listening on {url}  [{store}]",
        role.name()
    );
    if serves_api {
        println!(
            "\nPlace an order (repeat it: same answer, one order):\n\n  \
             curl -si {url}/orders -H 'content-type: application/json' \
             -H 'Idempotency-Key: order-1' \\\n    \
             -d '{{\"customer\":\"ada\",\"items\":[{{\"sku\":\"gift-box\",\"qty\":1,\"unit_cents\":2500}}]}}'\n\n\
             then GET {url}/orders/<order_id>, {url}/orders/<order_id>/invoice, {url}/metrics\n\
             Ctrl-C stops gracefully.\n"
        );
    } else {
        println!("metrics on {url}/metrics; Ctrl-C stops gracefully.");
    }
}
