//! The Orders endpoint: one entity per order. It accepts the order, asks
//! Billing to charge, asks Shipping to ship once paid, and records what came
//! back. `GET /orders/{id}` reads this state.

use exactly::{BlobRef, Context, Endpoint, HandlerError, handler_fn};
use serde::{Deserialize, Serialize};

use crate::messages::{
    Attachment, BILLING, Charge, Item, ORDERS, PaymentSettled, PlaceOrder, SHIPPING, Ship, Shipped,
    total_cents,
};
use crate::wiring::Deps;

/// Where an order is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// No `PlaceOrder` handled yet.
    #[default]
    New,
    /// Placed; Billing is charging.
    Placed,
    /// Charged; Shipping is shipping.
    Paid,
    /// The provider declined the charge.
    PaymentFailed,
    /// Shipped: done.
    Shipped,
}

/// How many times each message kind changed this order. Every handler bumps
/// its counter before anything else, so a message whose effect was applied
/// twice shows up as a 2 here: the soak requires exactly 1 of each.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// `PlaceOrder` messages applied.
    pub placed: u32,
    /// `PaymentSettled` messages applied.
    pub settled: u32,
    /// `Shipped` messages applied.
    pub shipped: u32,
}

/// An order's state (`e/orders/{id}`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Order {
    /// Where it is.
    pub status: Status,
    /// Who ordered.
    pub customer: String,
    /// What.
    pub items: Vec<Item>,
    /// Sum of the lines.
    pub total_cents: u64,
    /// Name, type and size of the attachment, if any (the bytes went on to
    /// Shipping).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<AttachmentInfo>,
    /// The provider's charge id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charge_id: Option<String>,
    /// Why the payment failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_error: Option<String>,
    /// Carrier tracking number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking: Option<String>,
    /// The invoice blob (written and owned by Billing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoice: Option<BlobRef>,
    /// The attachment itself, kept only until the order is paid and handed
    /// to Shipping (that `Ship` message goes through the claim check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_attachment: Option<Attachment>,
    /// Exactly-once witness.
    #[serde(default)]
    pub applied: Applied,
}

/// What Orders keeps of an attachment.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AttachmentInfo {
    /// File name.
    pub name: String,
    /// Media type.
    pub content_type: String,
    /// Base64 length (the decoded size is about 3/4 of it).
    pub base64_len: usize,
}

fn on_place(order: &mut Order, m: PlaceOrder, ctx: &mut Context) -> Result<(), HandlerError> {
    order.applied.placed += 1;
    if order.status != Status::New {
        return Ok(()); // a different message for the same order id: ignore
    }
    order.status = Status::Placed;
    order.customer = m.customer.clone();
    order.total_cents = total_cents(&m.items);
    order.items = m.items.clone();
    order.attachment = m.attachment.as_ref().map(|a| AttachmentInfo {
        name: a.name.clone(),
        content_type: a.content_type.clone(),
        base64_len: a.data_base64.len(),
    });
    order.pending_attachment = m.attachment;
    let charge = Charge {
        order: m.order,
        customer: m.customer,
        items: m.items,
        amount_cents: order.total_cents,
    };
    ctx.send(BILLING, &charge)?;
    Ok(())
}

fn on_settled(order: &mut Order, m: PaymentSettled, ctx: &mut Context) -> Result<(), HandlerError> {
    order.applied.settled += 1;
    if order.status != Status::Placed {
        return Ok(());
    }
    order.invoice = m.invoice;
    if !m.paid {
        order.status = Status::PaymentFailed;
        order.payment_error = m.reason;
        order.pending_attachment = None;
        return Ok(());
    }
    order.status = Status::Paid;
    order.charge_id = m.charge_id;
    // A large attachment makes this body large: the runtime writes it to
    // the blob store as a blob of this attempt and sends a reference.
    let ship = Ship {
        order: m.order,
        customer: order.customer.clone(),
        items: order.items.clone(),
        attachment: order.pending_attachment.take(),
    };
    ctx.send(SHIPPING, &ship)?;
    Ok(())
}

fn on_shipped(order: &mut Order, m: Shipped, _: &mut Context) -> Result<(), HandlerError> {
    order.applied.shipped += 1;
    if order.status == Status::Paid {
        order.status = Status::Shipped;
        order.tracking = Some(m.tracking);
    }
    Ok(())
}

/// The Orders endpoint.
pub fn endpoint(deps: &Deps) -> anyhow::Result<Endpoint> {
    Ok(deps
        .builder(ORDERS)
        .handler(handler_fn(|m: &PlaceOrder| m.order.clone(), on_place))
        .handler(handler_fn(|m: &PaymentSettled| m.order.clone(), on_settled))
        .handler(handler_fn(|m: &Shipped| m.order.clone(), on_shipped))
        .build()?)
}
