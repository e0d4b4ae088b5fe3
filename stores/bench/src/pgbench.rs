//! PostgreSQL's raw one-row commit rate: `pgbench` with one row per
//! connection and a one-row `UPDATE` script, on the server the store uses.

use std::process::Command;

use exactly_store_postgres::sqlx::{self, PgPool};

use crate::Result;

/// `pgbench -n -T {secs} -c {clients} -j {clients}` running
/// `UPDATE exactly_bench SET n = n + 1 WHERE id = :client_id + 1`: each
/// connection its own row, one autocommitted one-row UPDATE per
/// transaction.
pub struct Pgbench {
    bin: String,
    url: String,
    clients: usize,
    secs: u64,
    script: tempfile::NamedTempFile,
}

impl Pgbench {
    /// Creates the table (one row per client) through `pool`.
    pub async fn prepare(
        bin: String,
        url: &str,
        pool: &PgPool,
        clients: usize,
        secs: u64,
    ) -> Result<Self> {
        sqlx::raw_sql(
            "DROP TABLE IF EXISTS exactly_bench; \
             CREATE TABLE exactly_bench (id INT PRIMARY KEY, n BIGINT NOT NULL)",
        )
        .execute(pool)
        .await?;
        sqlx::query("INSERT INTO exactly_bench SELECT g, 0 FROM generate_series(1, $1) g")
            .bind(i32::try_from(clients)?)
            .execute(pool)
            .await?;
        let script = tempfile::NamedTempFile::new()?;
        std::fs::write(
            script.path(),
            "UPDATE exactly_bench SET n = n + 1 WHERE id = :client_id + 1;\n",
        )?;
        Ok(Self {
            bin,
            url: url.to_owned(),
            clients,
            secs,
            script,
        })
    }

    /// One run; its transactions per second. Blocks: nothing else runs
    /// beside it.
    pub fn run(&self) -> Result<f64> {
        let (c, t) = (self.clients.to_string(), self.secs.to_string());
        let output = Command::new(&self.bin)
            .args(["-n", "-T", &t, "-c", &c, "-j", &c, "-f"])
            .arg(self.script.path())
            .arg(&self.url)
            .output()?;
        let text = String::from_utf8_lossy(&output.stdout);
        text.lines()
            .find_map(|l| l.strip_prefix("tps = "))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| {
                let err = String::from_utf8_lossy(&output.stderr);
                format!("no tps in pgbench output: {text}{err}").into()
            })
    }

    /// Drops the table.
    pub async fn finish(self, pool: &PgPool) -> Result<()> {
        sqlx::raw_sql("DROP TABLE exactly_bench")
            .execute(pool)
            .await?;
        Ok(())
    }
}
