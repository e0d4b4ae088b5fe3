//! The soak's HTTP client: places orders the way real clients do — retrying
//! with the same `Idempotency-Key` on errors, sometimes repeating a request,
//! sometimes sending it twice at once, sometimes (wrongly) reusing a key for
//! a different order — and checks every answer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// What the client does with one order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// Sends it once (plus retries on errors).
    Once,
    /// Sends it, then again with the same key: expects the same answer.
    Repeat,
    /// Sends it twice at the same moment: expects two identical answers.
    Concurrent,
    /// Sends it, then a different body with the same key: expects 422.
    Reuse,
}

/// One order to place.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The `Idempotency-Key`.
    pub key: String,
    /// The JSON body.
    pub body: Value,
    /// How to send it.
    pub scenario: Scenario,
    /// Decoded size of its attachment, if it has one.
    pub attachment_bytes: Option<u64>,
}

/// Rates of the scenarios and of attachments.
#[derive(Clone, Copy, Debug)]
pub struct Mix {
    /// Sequential repeats.
    pub repeat: f64,
    /// Concurrent duplicates.
    pub concurrent: f64,
    /// Reused keys with a different body.
    pub reuse: f64,
    /// Orders with an attachment (100–300 KiB: claim-checked).
    pub attachment: f64,
}

/// Makes the plan of order `i`.
pub fn plan(i: usize, run: u64, mix: Mix, rng: &mut StdRng) -> Plan {
    let lines = rng.random_range(1..=3);
    let items: Vec<Value> = (0..lines)
        .map(|l| {
            json!({
                "sku": format!("sku-{}", rng.random_range(0..500) + l * 1000),
                "qty": rng.random_range(1..=5),
                "unit_cents": rng.random_range(100..=20_000),
            })
        })
        .collect();
    let mut body = json!({ "customer": format!("customer-{}", i % 997), "items": items });
    let mut attachment_bytes = None;
    if rng.random::<f64>() < mix.attachment {
        let mut data = vec![0u8; rng.random_range(100 * 1024..=300 * 1024)];
        rng.fill_bytes(&mut data);
        attachment_bytes = Some(data.len() as u64);
        body["attachment"] = json!({
            "name": "gift-note.bin",
            "content_type": "application/octet-stream",
            "data_base64": STANDARD.encode(&data),
        });
    }
    let roll = rng.random::<f64>();
    let scenario = if roll < mix.reuse {
        Scenario::Reuse
    } else if roll < mix.reuse + mix.concurrent {
        Scenario::Concurrent
    } else if roll < mix.reuse + mix.concurrent + mix.repeat {
        Scenario::Repeat
    } else {
        Scenario::Once
    };
    Plan {
        key: format!("soak-{run}-{i}"),
        body,
        scenario,
        attachment_bytes,
    }
}

/// Counters of the client side.
#[derive(Debug, Default)]
pub struct ClientStats {
    /// HTTP requests sent (retries included).
    pub requests: AtomicU64,
    /// Retries after a connection error or a 5xx.
    pub retries: AtomicU64,
    /// Repeats (sequential or concurrent) answered byte for byte the same.
    pub identical_repeats: AtomicU64,
    /// Reused keys answered 422, as they should be.
    pub reuse_refused: AtomicU64,
    /// Answers that were wrong: a repeat answered differently, a reused key
    /// accepted, a valid order refused. Must be 0.
    pub unexpected: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Talks to the API.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    /// A client of the API at `base`.
    pub fn new(base: String) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self { http, base })
    }

    /// `POST /orders`, retried with the same key on connection errors and
    /// 5xx answers, as a well-behaved client does.
    async fn post(
        &self,
        key: &str,
        body: &Value,
        stats: &ClientStats,
    ) -> Option<(StatusCode, String)> {
        for attempt in 0..40u32 {
            if attempt > 0 {
                bump(&stats.retries);
                let backoff = 50u64.saturating_mul(1 << attempt.min(5));
                tokio::time::sleep(Duration::from_millis(backoff)).await;
            }
            bump(&stats.requests);
            let sent = self
                .http
                .post(format!("{}/orders", self.base))
                .header("idempotency-key", key)
                .json(body)
                .send()
                .await;
            let Ok(response) = sent else { continue };
            let status = response.status();
            if status.is_server_error() {
                continue;
            }
            return Some((status, response.text().await.unwrap_or_default()));
        }
        None
    }

    /// Places one order as planned; returns its order id if accepted.
    pub async fn place(&self, plan: &Plan, stats: &ClientStats) -> Option<String> {
        let (first, second) = match plan.scenario {
            Scenario::Concurrent => {
                let (a, b) = tokio::join!(
                    self.post(&plan.key, &plan.body, stats),
                    self.post(&plan.key, &plan.body, stats)
                );
                (a, Some(b))
            }
            _ => (self.post(&plan.key, &plan.body, stats).await, None),
        };
        let Some((StatusCode::ACCEPTED, answer)) = first else {
            bump(&stats.unexpected);
            return None;
        };
        match plan.scenario {
            Scenario::Once => {}
            Scenario::Repeat | Scenario::Concurrent => {
                let again = match second {
                    Some(b) => b,
                    None => self.post(&plan.key, &plan.body, stats).await,
                };
                match again {
                    Some((StatusCode::ACCEPTED, a)) if a == answer => {
                        bump(&stats.identical_repeats)
                    }
                    _ => bump(&stats.unexpected),
                }
            }
            Scenario::Reuse => {
                let mut other = plan.body.clone();
                other["customer"] = json!("someone-else");
                match self.post(&plan.key, &other, stats).await {
                    Some((StatusCode::UNPROCESSABLE_ENTITY, _)) => bump(&stats.reuse_refused),
                    _ => bump(&stats.unexpected),
                }
            }
        }
        let parsed: Value = serde_json::from_str(&answer).ok()?;
        parsed["order_id"].as_str().map(str::to_owned)
    }
}

/// Orders the API accepted: order id and attachment size.
pub type Accepted = Arc<Mutex<Vec<(String, Option<u64>)>>>;

/// What to place.
#[derive(Clone, Copy, Debug)]
pub struct Placing {
    /// How many orders.
    pub orders: usize,
    /// Requests in flight at once.
    pub clients: usize,
    /// Seed of the plans.
    pub seed: u64,
    /// Scenario and attachment rates.
    pub mix: Mix,
}

/// Places every order, `clients` at a time, recording the accepted ones.
pub async fn place_all(
    placing: Placing,
    client: Client,
    stats: Arc<ClientStats>,
    accepted: Accepted,
) {
    let Placing {
        orders,
        clients,
        seed,
        mix,
    } = placing;
    let mut rng = StdRng::seed_from_u64(seed);
    let plans = (0..orders).map(move |i| plan(i, seed, mix, &mut rng));
    futures::stream::iter(plans)
        .map(|plan| {
            let (client, stats) = (client.clone(), stats.clone());
            async move { (client.place(&plan, &stats).await, plan.attachment_bytes) }
        })
        .buffer_unordered(clients.max(1))
        .for_each(|(id, attachment)| {
            if let Some(id) = id {
                accepted
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((id, attachment));
            }
            async {}
        })
        .await;
}
