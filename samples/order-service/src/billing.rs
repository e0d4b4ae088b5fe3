//! The Billing endpoint: one entity per order. It charges the customer
//! through the payment provider's HTTP API — never directly: the call is a
//! captured effect, made after the commit with a stable `Idempotency-Key`,
//! and its answer comes back as a `CallResult` message — then writes the
//! invoice as a blob side effect and tells Orders.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use exactly::{
    BlobRef, CallResult, Context, Endpoint, Handler, HandlerError, HttpCall, handler_fn,
};
use exactly_http::ReqwestExecutor;
use serde::{Deserialize, Serialize};

use crate::messages::{BILLING, Charge, Item, ORDERS, PaymentSettled};
use crate::payments::{ChargeAnswer, ChargeRequest};
use crate::wiring::Deps;

/// The name of the payment call, as it comes back in its `CallResult`.
const CHARGE_CALL: &str = "charge";

/// Where a bill is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BillStatus {
    /// No charge asked for yet.
    #[default]
    New,
    /// The call to the provider is committed; waiting for its answer.
    Charging,
    /// Charged; invoice written.
    Charged,
    /// The provider declined.
    Declined,
}

/// A bill's state (`e/billing/{order}`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Bill {
    /// Where it is.
    pub status: BillStatus,
    /// Who pays.
    pub customer: String,
    /// The lines.
    pub items: Vec<Item>,
    /// The amount.
    pub amount_cents: u64,
    /// The provider's charge id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charge_id: Option<String>,
    /// The invoice blob: published by the commit that wrote it, kept as
    /// long as this state references it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoice: Option<BlobRef>,
    /// `Charge` messages applied (exactly-once witness: must be 1).
    #[serde(default)]
    pub charges_applied: u32,
    /// Payment answers applied (must be 1).
    #[serde(default)]
    pub answers_applied: u32,
}

fn on_charge(
    payments: &str,
    bill: &mut Bill,
    m: Charge,
    ctx: &mut Context,
) -> Result<(), HandlerError> {
    bill.charges_applied += 1;
    if bill.status != BillStatus::New {
        return Ok(());
    }
    bill.status = BillStatus::Charging;
    bill.customer = m.customer.clone();
    bill.items = m.items;
    bill.amount_cents = m.amount_cents;
    let request = ChargeRequest {
        order: m.order,
        customer: m.customer,
        amount_cents: m.amount_cents,
    };
    let call = HttpCall::post_json(CHARGE_CALL, format!("{payments}/charges"), &request)
        .map_err(HandlerError::failed)?;
    ctx.call(call)?;
    Ok(())
}

/// Handles the provider's answer: writes the invoice, tells Orders.
struct OnAnswer;

impl Handler<CallResult> for OnAnswer {
    type State = Bill;

    fn entity_key(&self, r: &CallResult) -> String {
        r.entity.clone()
    }

    async fn handle(
        &self,
        bill: &mut Bill,
        r: CallResult,
        ctx: &mut Context,
    ) -> Result<(), HandlerError> {
        bill.answers_applied += 1;
        if r.name != CHARGE_CALL || bill.status != BillStatus::Charging {
            return Ok(());
        }
        let order = ctx.entity_key().to_owned();
        let settled = if r.is_success() {
            let answer: ChargeAnswer = r.json().map_err(HandlerError::failed)?;
            // Each attempt writes under its own key; only the blob of the
            // attempt that commits is published, the others are deleted.
            let text = invoice_text(&order, bill, &answer.charge_id);
            let invoice = ctx
                .write_blob("invoice.txt", "text/plain; charset=utf-8", text)
                .await?;
            bill.status = BillStatus::Charged;
            bill.charge_id = Some(answer.charge_id.clone());
            bill.invoice = Some(invoice.clone());
            PaymentSettled {
                order,
                paid: true,
                charge_id: Some(answer.charge_id),
                reason: None,
                invoice: Some(invoice),
            }
        } else {
            bill.status = BillStatus::Declined;
            let reason = format!(
                "payment provider answered {}: {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            );
            PaymentSettled {
                order,
                paid: false,
                charge_id: None,
                reason: Some(reason),
                invoice: None,
            }
        };
        ctx.send(ORDERS, &settled)?;
        Ok(())
    }
}

/// The invoice document (plain text keeps the sample dependency-free; a
/// PDF renderer would slot in here).
fn invoice_text(order: &str, bill: &Bill, charge_id: &str) -> String {
    let mut text = format!(
        "INVOICE\norder:    {order}\ncustomer: {}\ncharge:   {charge_id}\n\n",
        bill.customer
    );
    for item in &bill.items {
        let line = item.unit_cents.saturating_mul(u64::from(item.qty));
        text.push_str(&format!(
            "{:<20} {:>4} x {:>10} = {:>10}\n",
            item.sku,
            item.qty,
            cents(item.unit_cents),
            cents(line)
        ));
    }
    text.push_str(&format!("\ntotal: {}\n", cents(bill.amount_cents)));
    text
}

fn cents(c: u64) -> String {
    format!("{}.{:02}", c / 100, c % 100)
}

/// The Billing endpoint; needs the payment provider's URL.
pub fn endpoint(deps: &Deps) -> anyhow::Result<Endpoint> {
    let payments: Arc<str> = deps
        .payments_url
        .as_deref()
        .context("billing needs --payments-url")?
        .trim_end_matches('/')
        .into();
    Ok(deps
        .builder(BILLING)
        .calls(Arc::new(ReqwestExecutor::new(Duration::from_secs(5))))
        .handler(handler_fn(
            |m: &Charge| m.order.clone(),
            move |bill: &mut Bill, m, ctx| on_charge(&payments, bill, m, ctx),
        ))
        .handler(OnAnswer)
        .build()?)
}
