//! PostgreSQL: a database of the benchmark's own on the test server, fresh
//! tables per run, and `pgbench` with a one-row `UPDATE` as the physical
//! limit of the same server.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use exactly::Transport;
use exactly_store_postgres::PostgresStore;
use exactly_transport_sql::StoreAndQueue;
use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Executor, Row};

use crate::workload::Fresh;

/// The database the benchmark creates and uses (never the URL's own).
const DATABASE: &str = "exactly_bench";

/// The server's settings, found by [`Postgres::connect`].
pub struct Postgres {
    url: String,
    pgbench: Option<PathBuf>,
    /// `fsync` and `synchronous_commit`, as the server reported them.
    pub durability: String,
}

impl Postgres {
    /// Reads `EXACTLY_TEST_POSTGRES_URL` (and `EXACTLY_TEST_PGBENCH`),
    /// creates the benchmark's database if missing. `Err` names what is
    /// missing.
    pub async fn connect() -> Result<Self, String> {
        let admin_url = std::env::var("EXACTLY_TEST_POSTGRES_URL").map_err(|_| {
            "EXACTLY_TEST_POSTGRES_URL is not set (start a server: \
             `EXACTLY_SERVICES_DURABLE=1 scripts/services.sh up postgres`, then \
             `eval \"$(scripts/services.sh env)\"`)"
                .to_owned()
        })?;
        let mut admin = options(&admin_url)?
            .connect()
            .await
            .map_err(|e| format!("connecting to PostgreSQL: {e}"))?;
        let exists = sqlx::query("SELECT 1 FROM pg_database WHERE datname = $1")
            .bind(DATABASE)
            .fetch_optional(&mut admin)
            .await
            .map_err(|e| e.to_string())?;
        if exists.is_none() {
            sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {DATABASE}")))
                .execute(&mut admin)
                .await
                .map_err(|e| e.to_string())?;
        }
        let durability = durability(&mut admin).await?;
        let _ = admin.close().await;
        Ok(Self {
            url: with_database(&admin_url, DATABASE),
            pgbench: std::env::var_os("EXACTLY_TEST_PGBENCH").map(PathBuf::from),
            durability,
        })
    }

    /// `fsync` and `synchronous_commit` now: another user of the server
    /// may have switched them during the run.
    pub async fn durability_now(&self) -> Result<String, String> {
        let mut conn = options(&self.url)?
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        let now = durability(&mut conn).await;
        let _ = conn.close().await;
        now
    }

    /// A pool big enough for `workers` workers and as many producers, a
    /// store and a queue on it (one `StoreAndQueue`), both tables emptied.
    pub async fn fresh(&self, workers: usize) -> Result<Fresh, String> {
        let (store, pool) = self.store(workers).await?;
        let db = Arc::new(
            StoreAndQueue::postgres(store)
                .await
                .map_err(|e| e.to_string())?,
        );
        pool.execute("TRUNCATE exactly_queue")
            .await
            .map_err(|e| e.to_string())?;
        Ok(Fresh {
            store: db.clone(),
            transport: db.clone(),
            colocated: Some(db),
            _keep: Box::new(pool),
        })
    }

    /// A store on such a pool, its table emptied, and the transport
    /// `transport` makes (given the pool).
    pub async fn fresh_with(
        &self,
        workers: usize,
        transport: impl AsyncFnOnce(&PgPool) -> Result<Arc<dyn Transport>, String>,
    ) -> Result<Fresh, String> {
        let (store, pool) = self.store(workers).await?;
        Ok(Fresh {
            store: Arc::new(store),
            transport: transport(&pool).await?,
            colocated: None,
            _keep: Box::new(pool),
        })
    }

    /// A store on a pool for `workers` workers and as many producers, its
    /// table emptied.
    async fn store(&self, workers: usize) -> Result<(PostgresStore, PgPool), String> {
        let connections = u32::try_from(2 * workers + 4).unwrap_or(u32::MAX).max(10);
        let pool = exactly_store_postgres::pool_options()
            .max_connections(connections)
            .connect_with(options(&self.url)?)
            .await
            .map_err(|e| e.to_string())?;
        let store = PostgresStore::from_pool(pool.clone())
            .await
            .map_err(|e| e.to_string())?;
        pool.execute("TRUNCATE exactly_kv")
            .await
            .map_err(|e| e.to_string())?;
        Ok((store, pool))
    }

    /// `pgbench` transactions per second for a one-row `UPDATE` of one of
    /// `rows` rows, with `clients` clients for `duration`. `Err` says why
    /// it could not run.
    pub async fn pgbench(
        &self,
        rows: u64,
        clients: usize,
        duration: Duration,
    ) -> Result<f64, String> {
        let Some(pgbench) = self.pgbench.clone() else {
            return Err("EXACTLY_TEST_PGBENCH is not set (scripts/services.sh env)".into());
        };
        let mut conn = options(&self.url)?
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP TABLE IF EXISTS bench_counter;
             CREATE TABLE bench_counter (id INT PRIMARY KEY, n BIGINT NOT NULL);
             INSERT INTO bench_counter SELECT g, 0 FROM generate_series(1, {rows}) g;"
        )))
        .execute(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
        let _ = conn.close().await;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let script = dir.path().join("update.sql");
        std::fs::write(
            &script,
            format!(
                "\\set id random(1, {rows})\n\
                 UPDATE bench_counter SET n = n + 1 WHERE id = :id;\n"
            ),
        )
        .map_err(|e| e.to_string())?;
        let threads = clients.min(std::thread::available_parallelism().map_or(1, |n| n.get()));
        let mut command = Command::new(&pgbench);
        command
            .arg("-n")
            .arg("-f")
            .arg(&script)
            .arg(format!("-c{clients}"))
            .arg(format!("-j{threads}"))
            .arg(format!("-T{}", duration.as_secs().max(1)))
            .arg(&self.url);
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("running {}: {e}", pgbench.display()))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        parse_tps(&stdout).ok_or_else(|| {
            let stderr = String::from_utf8_lossy(&output.stderr);
            format!("pgbench printed no tps: {}", stderr.trim())
        })
    }
}

async fn durability(conn: &mut sqlx::PgConnection) -> Result<String, String> {
    let mut settings = Vec::new();
    for name in ["fsync", "synchronous_commit"] {
        let row = sqlx::query(AssertSqlSafe(format!("SHOW {name}")))
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| e.to_string())?;
        settings.push(format!("{name}={}", row.get::<String, _>(0)));
    }
    Ok(settings.join(", "))
}

fn options(url: &str) -> Result<PgConnectOptions, String> {
    exactly_store_postgres::connect_options(url).map_err(|e| e.to_string())
}

/// `url` with its database name replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority = base.find("://").map_or(0, |i| i + 3);
    let host = base[authority..]
        .rfind('@')
        .map_or(authority, |i| authority + i + 1);
    let path = base[host..].find('/').map_or(base.len(), |i| host + i);
    let query = query.map(|q| format!("?{q}")).unwrap_or_default();
    format!("{}/{database}{query}", &base[..path])
}

/// The `tps = N` figure of pgbench's report.
fn parse_tps(report: &str) -> Option<f64> {
    report
        .lines()
        .find_map(|l| l.trim().strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_is_replaced_and_the_rest_kept() {
        assert_eq!(
            with_database("postgres://u:p@h:1/postgres", "x"),
            "postgres://u:p@h:1/x"
        );
        assert_eq!(
            with_database("postgres://u:p/q@h:1/db?sslmode=disable", "x"),
            "postgres://u:p/q@h:1/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
    }

    #[test]
    fn tps_is_read_from_the_report() {
        let report =
            "latency average = 1.2 ms\ntps = 812.345678 (without initial connection time)\n";
        assert_eq!(parse_tps(report), Some(812.345678));
        assert_eq!(parse_tps("nothing"), None);
    }
}
