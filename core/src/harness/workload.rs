//! The harness workload: chains of messages hopping between entities on two
//! endpoints, plus a publish fanned out to both. Every application is
//! recorded in the entity's state, so lost and duplicated effects can be
//! counted at the end.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::blob::BlobRef;
use crate::call::{CallResult, HttpCall};
use crate::context::Context;
use crate::error::HandlerError;
use crate::handler::Handler;
use crate::message::Message;

/// The claim-check threshold the harness sets when blobs are on.
pub const CLAIM_THRESHOLD: usize = 512;

/// One hop of a chain.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Hop {
    /// Which chain.
    pub chain: u32,
    /// Position in the chain.
    pub hop: u32,
    /// Differs per attempt, so two attempts' outputs differ in bytes.
    pub nonce: String,
    /// Makes the message large enough for the claim check, when blobs are on.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub padding: String,
}

impl Message for Hop {
    const TYPE: &'static str = "harness.Hop";
}

/// Published at the start of each chain to every subscribed endpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Fanned {
    /// Which chain.
    pub chain: u32,
}

impl Message for Fanned {
    const TYPE: &'static str = "harness.Fanned";
}

/// What an entity has applied: effect name → number of applications.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Applied {
    /// Effect name → times applied.
    pub effects: BTreeMap<String, u32>,
    /// Invoices written as blob side effects.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub invoices: Vec<BlobRef>,
}

/// The shape of the workload.
#[derive(Clone, Copy, Debug)]
pub struct Workload {
    /// Independent chains, each started by one seed message.
    pub chains: u32,
    /// Messages per chain.
    pub hops: u32,
    /// Entities per endpoint.
    pub entities: u32,
}

impl Default for Workload {
    fn default() -> Self {
        Self {
            chains: 3,
            hops: 3,
            entities: 2,
        }
    }
}

impl Workload {
    /// Endpoint index (0 or 1) and entity key of hop `hop` of `chain`.
    /// Some consecutive hops land on the same entity (a self-send).
    pub fn route(&self, chain: u32, hop: u32) -> (usize, String) {
        let endpoint = ((chain * 3 + hop * 5) / 2 % 2) as usize;
        let entity = (chain + hop / 2) % self.entities.max(1);
        (endpoint, format!("k{entity}"))
    }

    /// Entity key receiving the fan-out of `chain`.
    pub fn fan_key(&self, chain: u32) -> String {
        format!("n{}", chain % self.entities.max(1))
    }

    /// Every effect that must be applied exactly once: (endpoint, entity
    /// key, effect name).
    pub fn expected(&self, with_calls: bool) -> Vec<(usize, String, String)> {
        let mut out = Vec::new();
        for chain in 0..self.chains {
            if with_calls {
                let (endpoint, key) = self.route(chain, 0);
                out.push((endpoint, key, format!("paid:{chain}")));
            }
            for hop in 0..self.hops {
                let (endpoint, key) = self.route(chain, hop);
                out.push((endpoint, key, format!("hop:{chain}:{hop}")));
            }
            for endpoint in 0..2 {
                out.push((endpoint, self.fan_key(chain), format!("fan:{chain}")));
            }
        }
        out
    }
}

/// Handles [`Hop`]: records it and sends the next hop (plus, at hop 0, a
/// published [`Fanned`] and, with a third party, a `charge` call).
pub struct HopHandler {
    pub(crate) workload: Workload,
    pub(crate) endpoints: [String; 2],
    pub(crate) charge: Option<(String, bool)>,
    pub(crate) blobs: bool,
}

impl Handler<Hop> for HopHandler {
    type State = Applied;

    fn entity_key(&self, m: &Hop) -> String {
        self.workload.route(m.chain, m.hop).1
    }

    async fn handle(&self, s: &mut Applied, m: Hop, ctx: &mut Context) -> Result<(), HandlerError> {
        *s.effects
            .entry(format!("hop:{}:{}", m.chain, m.hop))
            .or_default() += 1;
        if self.blobs {
            // Different bytes per attempt: only the committed attempt's may
            // ever be visible.
            let text = format!("invoice {}:{} by attempt {}", m.chain, m.hop, ctx.new_id());
            let name = format!("invoice-{}-{}", m.chain, m.hop);
            s.invoices
                .push(ctx.write_blob(&name, "text/plain", text).await?);
        }
        let next = m.hop + 1;
        if next < self.workload.hops {
            let (endpoint, _) = self.workload.route(m.chain, next);
            let nonce = ctx.new_id().to_string();
            let padding = if self.blobs {
                "x".repeat(CLAIM_THRESHOLD + 88)
            } else {
                String::new()
            };
            let hop = Hop {
                chain: m.chain,
                hop: next,
                nonce,
                padding,
            };
            ctx.send(&self.endpoints[endpoint], &hop)?;
        }
        if m.hop == 0 {
            ctx.publish(&Fanned { chain: m.chain })?;
            if let Some((url, rpc)) = &self.charge {
                let charge = crate::harness::Charge { chain: m.chain };
                let call = if *rpc {
                    HttpCall::exactly_rpc("charge", url.clone(), "Charge", &charge)
                } else {
                    HttpCall::post_json("charge", url.clone(), &charge)
                };
                ctx.call(call.map_err(HandlerError::failed)?)?;
            }
        }
        Ok(())
    }
}

/// Handles the [`CallResult`] of a charge: records `paid:{chain}`.
pub struct PaidHandler;

impl Handler<CallResult> for PaidHandler {
    type State = Applied;

    fn entity_key(&self, r: &CallResult) -> String {
        r.entity.clone()
    }

    async fn handle(
        &self,
        s: &mut Applied,
        r: CallResult,
        _: &mut Context,
    ) -> Result<(), HandlerError> {
        let charge: crate::harness::Charge = r.json().map_err(HandlerError::failed)?;
        let outcome = if r.is_success() { "paid" } else { "declined" };
        *s.effects
            .entry(format!("{outcome}:{}", charge.chain))
            .or_default() += 1;
        Ok(())
    }
}

/// Handles [`Fanned`]: records it.
pub struct FanHandler {
    pub(crate) workload: Workload,
}

impl Handler<Fanned> for FanHandler {
    type State = Applied;

    fn entity_key(&self, m: &Fanned) -> String {
        self.workload.fan_key(m.chain)
    }

    async fn handle(
        &self,
        s: &mut Applied,
        m: Fanned,
        _: &mut Context,
    ) -> Result<(), HandlerError> {
        *s.effects.entry(format!("fan:{}", m.chain)).or_default() += 1;
        Ok(())
    }
}
