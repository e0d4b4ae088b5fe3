//! The worker processes of a soak: `--role orders|billing|shipping` children
//! of this same binary, killed with SIGKILL at random and restarted.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use rand::Rng;
use tokio::process::{Child, Command};
use tokio::sync::{Mutex, watch};
use tracing::{info, warn};

/// One worker process slot.
#[derive(Debug)]
struct Slot {
    role: &'static str,
    replica: usize,
    child: Option<Child>,
}

/// How to start a worker.
#[derive(Clone, Debug)]
pub struct WorkerSpec {
    /// This binary.
    pub exe: PathBuf,
    /// The shared data directory.
    pub data_dir: PathBuf,
    /// The payment provider.
    pub payments_url: String,
    /// `--concurrency` of each worker.
    pub concurrency: usize,
    /// `--lease-secs` of each worker.
    pub lease_secs: u64,
    /// `--store`, if not the default.
    pub store: Option<String>,
    /// `--transport`, if not the default.
    pub transport: Option<String>,
    /// `--blobs`, if not the default.
    pub blobs: Option<PathBuf>,
}

/// The running workers.
#[derive(Debug)]
pub struct Fleet {
    spec: WorkerSpec,
    slots: Vec<Slot>,
    /// SIGKILLs sent.
    pub kills: u64,
    /// Workers that exited without being killed (crashes).
    pub unexpected_exits: u64,
    /// Workers that exited cleanly on SIGTERM at the end.
    pub graceful_stops: u64,
}

impl Fleet {
    /// Starts `replicas` processes of each worker role.
    pub fn start(spec: WorkerSpec, replicas: usize) -> anyhow::Result<Self> {
        std::fs::create_dir_all(spec.data_dir.join("logs"))?;
        let mut fleet = Self {
            spec,
            slots: Vec::new(),
            kills: 0,
            unexpected_exits: 0,
            graceful_stops: 0,
        };
        for role in ["orders", "billing", "shipping"] {
            for replica in 0..replicas.max(1) {
                let child = fleet.spawn(role, replica)?;
                fleet.slots.push(Slot {
                    role,
                    replica,
                    child: Some(child),
                });
            }
        }
        Ok(fleet)
    }

    fn spawn(&self, role: &str, replica: usize) -> anyhow::Result<Child> {
        let log = log_file(&self.spec.data_dir, role, replica)?;
        let spec = &self.spec;
        let mut command = Command::new(&spec.exe);
        // Only what the soak says: settings this process inherited (a
        // listen address, another store) must not reach the workers.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("ORDER_SERVICE_")
                || name.starts_with("EXACTLY_STORE")
                || name.starts_with("EXACTLY_TRANSPORT")
                || name.starts_with("EXACTLY_BLOBS")
            {
                command.env_remove(&*name);
            }
        }
        // Passed in the environment: a URL may hold a password, and the
        // command line is visible to every user of the machine.
        if let Some(store) = &spec.store {
            command.env("EXACTLY_STORE", store);
        }
        if let Some(transport) = &spec.transport {
            command.env("EXACTLY_TRANSPORT", transport);
        }
        if let Some(blobs) = &spec.blobs {
            command.env("EXACTLY_BLOBS", blobs);
        }
        command
            .args(["--role", role, "--log-format", "json", "--gc-secs", "0"])
            .arg("--data-dir")
            .arg(&spec.data_dir)
            .args(["--payments-url", &spec.payments_url])
            .args(["--concurrency", &spec.concurrency.to_string()])
            .args(["--lease-secs", &spec.lease_secs.to_string()])
            .args(["--sweep-secs", "1", "--stop-on-stdin-eof"])
            .env("RUST_LOG", "warn,order_service=info")
            // Our end of the pipe closes when the soak dies, however it
            // dies: the worker then stops instead of living on.
            .stdin(Stdio::piped())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} --role {role}", spec.exe.display()))
    }

    /// SIGKILLs one running worker chosen at random; returns its name.
    pub async fn kill_random(&mut self) -> Option<String> {
        let running: Vec<usize> = (0..self.slots.len())
            .filter(|&i| self.slots[i].child.is_some())
            .collect();
        if running.is_empty() {
            return None;
        }
        let slot = &mut self.slots[running[rand::rng().random_range(0..running.len())]];
        let mut child = slot.child.take()?;
        // `start_kill` is SIGKILL on Unix: no chance to clean up.
        let _ = child.start_kill();
        let _ = child.wait().await;
        self.kills += 1;
        Some(format!("{}-{}", slot.role, slot.replica))
    }

    /// Restarts every worker that is not running (killed or crashed).
    pub fn restart_missing(&mut self) -> anyhow::Result<()> {
        for i in 0..self.slots.len() {
            if let Some(child) = &mut self.slots[i].child {
                match child.try_wait() {
                    Ok(None) => continue,
                    Ok(Some(status)) => {
                        warn!(role = self.slots[i].role, %status, "worker exited unexpectedly");
                        self.unexpected_exits += 1;
                    }
                    Err(e) => warn!(error = %e, "cannot poll a worker"),
                }
            }
            let (role, replica) = (self.slots[i].role, self.slots[i].replica);
            self.slots[i].child = Some(self.spawn(role, replica)?);
        }
        Ok(())
    }

    /// Stops every worker with SIGTERM and waits for it (SIGKILL after
    /// `grace`): the graceful shutdown path.
    pub async fn stop(&mut self, grace: Duration) {
        for slot in &mut self.slots {
            let Some(mut child) = slot.child.take() else {
                continue;
            };
            if let Some(pid) = child.id() {
                let _ = Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status()
                    .await;
            }
            match tokio::time::timeout(grace, child.wait()).await {
                Ok(Ok(status)) if status.success() => self.graceful_stops += 1,
                Ok(_) => warn!(role = slot.role, "worker did not stop cleanly"),
                Err(_) => {
                    warn!(role = slot.role, "worker ignored SIGTERM; killing it");
                    let _ = child.kill().await;
                }
            }
        }
    }

    /// How many worker processes there are.
    pub fn size(&self) -> usize {
        self.slots.len()
    }
}

fn log_file(dir: &Path, role: &str, replica: usize) -> anyhow::Result<std::fs::File> {
    let path = dir.join("logs").join(format!("{role}-{replica}.log"));
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))
}

/// Kills a random worker about every `every` (±50%) and restarts it after
/// `restart_after`, until `stop`.
pub async fn chaos(
    fleet: Arc<Mutex<Fleet>>,
    kills: Arc<AtomicU64>,
    every: Duration,
    restart_after: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mean = every.as_millis() as u64;
    loop {
        let wait = Duration::from_millis(mean / 2 + rand::random_range(0..=mean));
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(wait) => {}
        }
        let victim = fleet.lock().await.kill_random().await;
        if let Some(victim) = victim {
            kills.fetch_add(1, Ordering::Relaxed);
            info!(%victim, "SIGKILL");
        }
        tokio::time::sleep(restart_after).await;
        if let Err(e) = fleet.lock().await.restart_missing() {
            warn!(error = %e, "cannot restart a worker");
        }
    }
}
