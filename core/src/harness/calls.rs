//! Third-party calls under test: an executor, the URL the workload charges,
//! and a way to read what the provider actually charged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::future::BoxFuture;

use crate::call::{CallError, CallExecutor, CallResult, HttpCall};
use crate::env::Random;
use crate::fault::roll;

/// What the harness needs to test captured calls end to end.
#[derive(Clone)]
pub struct CallsUnderTest {
    /// Performs the calls (e.g. `exactly-http`'s reqwest executor).
    pub executor: Arc<dyn CallExecutor>,
    /// Where the workload sends its `charge` calls (`POST`, JSON `{"chain": n}`).
    pub url: String,
    /// Every charge the provider applied: (idempotency key, chain).
    pub charges: ChargeLedger,
    /// Whether `url` is another exactly service, called with
    /// [`HttpCall::exactly_rpc`] (request type `Charge`) instead of a `POST`.
    pub rpc: bool,
}

/// Reads the charges a provider applied: (idempotency key, chain).
pub type ChargeLedger = Arc<dyn Fn() -> BoxFuture<'static, Vec<(String, u32)>> + Send + Sync>;

impl std::fmt::Debug for CallsUnderTest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallsUnderTest")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// The request body of a workload charge.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Charge {
    /// The chain being paid for.
    pub chain: u32,
}

/// An in-process payment provider that honours idempotency keys, with
/// injected 5xx answers (before charging) and lost responses (after).
#[derive(Debug)]
pub struct FakePaymentApi {
    random: Arc<dyn Random>,
    fault_ppm: u32,
    honours_keys: bool,
    answers: Mutex<HashMap<String, CallResult>>,
    charges: Arc<Mutex<Vec<(String, u32)>>>,
}

impl FakePaymentApi {
    /// A provider failing `fault_ppm` parts per million of requests each way.
    pub fn new(random: Arc<dyn Random>, fault_ppm: u32) -> Self {
        Self {
            random,
            fault_ppm,
            honours_keys: true,
            answers: Mutex::default(),
            charges: Arc::default(),
        }
    }

    /// A provider that ignores idempotency keys and charges every request
    /// (to show the harness catches a double charge).
    pub fn ignoring_keys(mut self) -> Self {
        self.honours_keys = false;
        self
    }

    /// This provider as [`CallsUnderTest`].
    pub fn under_test(self) -> CallsUnderTest {
        let charges = self.charges.clone();
        CallsUnderTest {
            executor: Arc::new(self),
            url: "memory://payments/charges".into(),
            rpc: false,
            charges: Arc::new(move || {
                let charges = charges.clone();
                Box::pin(async move {
                    charges
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .clone()
                })
            }),
        }
    }
}

#[async_trait]
impl CallExecutor for FakePaymentApi {
    async fn execute(&self, call: &HttpCall) -> Result<CallResult, CallError> {
        if roll(self.random.as_ref(), self.fault_ppm) {
            return Err(CallError::Transient(
                "injected: 503 from the provider".into(),
            ));
        }
        let charge: Charge =
            serde_json::from_slice(&call.body).map_err(|e| CallError::Permanent(e.to_string()))?;
        let answer = {
            let mut answers = self
                .answers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !self.honours_keys {
                answers.clear();
            }
            answers
                .entry(call.idempotency_key.clone())
                .or_insert_with(|| {
                    self.charges
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push((call.idempotency_key.clone(), charge.chain));
                    CallResult {
                        entity: String::new(),
                        name: call.name.clone(),
                        idempotency_key: call.idempotency_key.clone(),
                        status: 201,
                        headers: Default::default(),
                        body: call.body.clone(),
                        from_check: false,
                        release: None,
                    }
                })
                .clone()
        };
        if roll(self.random.as_ref(), self.fault_ppm) {
            return Err(CallError::Transient(
                "injected: response lost after the charge".into(),
            ));
        }
        Ok(answer)
    }
}
