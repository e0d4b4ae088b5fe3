//! The messages that flow between the endpoints, and the pieces of an order
//! they carry. Every message names its order: the order id is the entity key
//! at every hop (`e/orders/{id}`, `e/billing/{id}`, `e/shipping/{id}`).

use exactly::{BlobRef, Message};
use serde::{Deserialize, Serialize};

/// Queue (and endpoint) names.
pub const ORDERS: &str = "orders";
/// See [`ORDERS`].
pub const BILLING: &str = "billing";
/// See [`ORDERS`].
pub const SHIPPING: &str = "shipping";

/// One line of an order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// Stock-keeping unit.
    pub sku: String,
    /// How many.
    pub qty: u32,
    /// Price of one, in cents.
    pub unit_cents: u64,
}

/// A file the customer attached (a gift note, a customs form): base64 in
/// JSON. From Orders to Shipping it travels through the claim check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// File name, for people.
    pub name: String,
    /// Media type.
    pub content_type: String,
    /// The content, base64 (standard alphabet, padded).
    pub data_base64: String,
}

/// The total of some lines, in cents (saturating: a sample, not a till).
pub fn total_cents(items: &[Item]) -> u64 {
    items.iter().fold(0u64, |sum, i| {
        sum.saturating_add(i.unit_cents.saturating_mul(u64::from(i.qty)))
    })
}

/// API → Orders: a customer placed an order.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PlaceOrder {
    /// Order id (derived from the caller and the `Idempotency-Key`).
    pub order: String,
    /// Who ordered.
    pub customer: String,
    /// What.
    pub items: Vec<Item>,
    /// An optional attachment for the parcel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<Attachment>,
}
impl Message for PlaceOrder {
    const TYPE: &'static str = "orders.PlaceOrder";
}

/// Orders → Billing: charge the customer for an order.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Charge {
    /// Order id.
    pub order: String,
    /// Who pays.
    pub customer: String,
    /// The lines, for the invoice.
    pub items: Vec<Item>,
    /// The amount.
    pub amount_cents: u64,
}
impl Message for Charge {
    const TYPE: &'static str = "billing.Charge";
}

/// Billing → Orders: the payment provider's final answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PaymentSettled {
    /// Order id.
    pub order: String,
    /// Whether the customer was charged.
    pub paid: bool,
    /// The provider's charge id, when paid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charge_id: Option<String>,
    /// Why not, when not paid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The invoice Billing wrote as a blob side effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoice: Option<BlobRef>,
}
impl Message for PaymentSettled {
    const TYPE: &'static str = "orders.PaymentSettled";
}

/// Orders → Shipping: ship a paid order.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Ship {
    /// Order id.
    pub order: String,
    /// To whom.
    pub customer: String,
    /// What.
    pub items: Vec<Item>,
    /// Goes in the parcel; large ones make this message claim-checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<Attachment>,
}
impl Message for Ship {
    const TYPE: &'static str = "shipping.Ship";
}

/// Shipping → Orders: the parcel left.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Shipped {
    /// Order id.
    pub order: String,
    /// Carrier tracking number.
    pub tracking: String,
    /// Size of the attachment packed, if any (decoded bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment_bytes: Option<u64>,
}
impl Message for Shipped {
    const TYPE: &'static str = "orders.Shipped";
}
