//! A fake payment provider, Stripe-style: `POST /charges` with an
//! `Idempotency-Key` charges once per key and answers every repeat with the
//! first answer; `GET /stats` counts charges per order, so a double charge
//! (one order charged under two keys, i.e. the charge was *asked for* twice)
//! is visible. It can also fail on purpose — 503 before charging, 502 after
//! charging (a lost answer) — so callers must retry with the same key.
//!
//! Everything is in memory: restarting the provider forgets keys and counts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The body of `POST /charges`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeRequest {
    /// The merchant's order id.
    pub order: String,
    /// Who pays. Customers whose name starts with `declined` are declined.
    pub customer: String,
    /// How much.
    pub amount_cents: u64,
}

/// The body of a `201` answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChargeAnswer {
    /// The provider's id of the charge.
    pub charge_id: String,
    /// The merchant's order id.
    pub order: String,
    /// How much was charged.
    pub amount_cents: u64,
}

/// What `GET /stats` reports.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ProviderStats {
    /// `POST /charges` requests received.
    pub requests: u64,
    /// Charges made (money moved).
    pub charges: u64,
    /// Requests answered from the idempotency store (no new charge).
    pub replays: u64,
    /// Failures injected on purpose (503 before, 502 after charging).
    pub injected_failures: u64,
    /// Charges declined.
    pub declined: u64,
    /// Distinct orders charged at least once.
    pub orders_charged: u64,
    /// Orders charged more than once: must be 0.
    pub double_charged_orders: u64,
    /// Up to 20 of them, for the report.
    pub double_charged_examples: Vec<String>,
}

#[derive(Debug)]
struct Stored {
    request: ChargeRequest,
    status: StatusCode,
    body: Value,
}

#[derive(Debug, Default)]
struct Ledger {
    answers: HashMap<String, Stored>,
    charges: HashMap<String, Vec<String>>,
    stats: ProviderStats,
}

/// The provider. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Provider {
    ledger: Arc<Mutex<Ledger>>,
    failure_rate: f64,
}

impl Provider {
    /// A provider failing about `failure_rate` of requests on purpose (half
    /// before charging, half after).
    pub fn new(failure_rate: f64) -> Self {
        Self {
            ledger: Arc::default(),
            failure_rate: failure_rate.clamp(0.0, 1.0),
        }
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The counters, double charges included.
    pub fn stats(&self) -> ProviderStats {
        let ledger = self.ledger();
        let mut stats = ledger.stats.clone();
        stats.orders_charged = ledger.charges.len() as u64;
        let mut doubled: Vec<&String> = ledger
            .charges
            .iter()
            .filter(|(_, c)| c.len() > 1)
            .map(|(order, _)| order)
            .collect();
        doubled.sort();
        stats.double_charged_orders = doubled.len() as u64;
        stats.double_charged_examples = doubled.into_iter().take(20).cloned().collect();
        stats
    }

    /// `POST /charges`, `GET /stats`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/charges", post(charge))
            .route("/stats", get(stats))
            .with_state(self.clone())
    }

    fn fail(&self) -> bool {
        self.failure_rate > 0.0 && rand::random::<f64>() < self.failure_rate / 2.0
    }
}

async fn stats(State(provider): State<Provider>) -> Json<ProviderStats> {
    Json(provider.stats())
}

fn error(status: StatusCode, code: &str) -> Response {
    (status, Json(json!({ "error": code }))).into_response()
}

async fn charge(State(provider): State<Provider>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(key) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()) else {
        return error(StatusCode::BAD_REQUEST, "idempotency_key_required");
    };
    let Ok(request) = serde_json::from_slice::<ChargeRequest>(&body) else {
        return error(StatusCode::BAD_REQUEST, "malformed_request");
    };
    provider.ledger().stats.requests += 1;
    if provider.fail() {
        provider.ledger().stats.injected_failures += 1;
        return error(StatusCode::SERVICE_UNAVAILABLE, "try_again");
    }
    let (status, answer) = {
        let mut ledger = provider.ledger();
        let ledger = &mut *ledger;
        match ledger.answers.get(key) {
            Some(stored) if stored.request != request => {
                return error(StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused");
            }
            Some(stored) => {
                ledger.stats.replays += 1;
                (stored.status, stored.body.clone())
            }
            None => {
                let (status, body) = if request.customer.starts_with("declined") {
                    ledger.stats.declined += 1;
                    (
                        StatusCode::PAYMENT_REQUIRED,
                        json!({ "error": "card_declined" }),
                    )
                } else {
                    let charge_id = format!("ch_{}", uuid::Uuid::now_v7().simple());
                    ledger.stats.charges += 1;
                    ledger
                        .charges
                        .entry(request.order.clone())
                        .or_default()
                        .push(charge_id.clone());
                    let answer = ChargeAnswer {
                        charge_id,
                        order: request.order.clone(),
                        amount_cents: request.amount_cents,
                    };
                    (StatusCode::CREATED, json!(answer))
                };
                ledger.answers.insert(
                    key.to_owned(),
                    Stored {
                        request,
                        status,
                        body: body.clone(),
                    },
                );
                (status, body)
            }
        }
    };
    if provider.fail() {
        // Charged, but the answer never reaches the caller.
        provider.ledger().stats.injected_failures += 1;
        return error(StatusCode::BAD_GATEWAY, "answer_lost");
    }
    (status, Json(answer)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn serve(provider: &Provider) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("test setup");
        let url = format!("http://{}", listener.local_addr().expect("test setup"));
        tokio::spawn(axum::serve(listener, provider.router()).into_future());
        url
    }

    async fn charge(url: &str, key: &str, customer: &str) -> reqwest::StatusCode {
        let body = ChargeRequest {
            order: "o1".into(),
            customer: customer.into(),
            amount_cents: 500,
        };
        reqwest::Client::new()
            .post(format!("{url}/charges"))
            .header("idempotency-key", key)
            .json(&body)
            .send()
            .await
            .expect("test setup")
            .status()
    }

    #[tokio::test]
    async fn one_charge_per_key_and_a_second_key_shows_as_a_double_charge() {
        let provider = Provider::new(0.0);
        let url = serve(&provider).await;
        assert_eq!(charge(&url, "k1", "ada").await, StatusCode::CREATED);
        assert_eq!(charge(&url, "k1", "ada").await, StatusCode::CREATED);
        let stats = provider.stats();
        assert_eq!(
            (stats.charges, stats.replays, stats.double_charged_orders),
            (1, 1, 0)
        );

        assert_eq!(
            charge(&url, "k1", "bob").await,
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(charge(&url, "k2", "ada").await, StatusCode::CREATED);
        let stats = provider.stats();
        assert_eq!(stats.double_charged_orders, 1);
        assert_eq!(stats.double_charged_examples, ["o1"]);

        assert_eq!(
            charge(&url, "k3", "declined-card").await,
            StatusCode::PAYMENT_REQUIRED
        );
    }
}
