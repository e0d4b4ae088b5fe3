//! The Shipping endpoint: one entity per order. It packs the parcel (with
//! the attachment, which arrived through the claim check if it was large),
//! assigns a tracking number and tells Orders.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use exactly::{Context, Endpoint, HandlerError, handler_fn};
use serde::{Deserialize, Serialize};

use crate::messages::{ORDERS, SHIPPING, Ship, Shipped};
use crate::wiring::Deps;

/// A shipment's state (`e/shipping/{order}`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Shipment {
    /// Carrier tracking number, once shipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking: Option<String>,
    /// Units packed.
    pub units: u64,
    /// Decoded size of the attachment packed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment_bytes: Option<u64>,
    /// `Ship` messages applied (exactly-once witness: must be 1).
    #[serde(default)]
    pub ships_applied: u32,
}

fn on_ship(shipment: &mut Shipment, m: Ship, ctx: &mut Context) -> Result<(), HandlerError> {
    shipment.ships_applied += 1;
    if shipment.tracking.is_some() {
        return Ok(());
    }
    let attachment_bytes = match &m.attachment {
        Some(a) => Some(
            STANDARD
                .decode(&a.data_base64)
                .map_err(|e| HandlerError::failed(format!("attachment is not base64: {e}")))?
                .len() as u64,
        ),
        None => None,
    };
    // The message id is fixed at capture and the same in every copy, so the
    // tracking number is too.
    let id = ctx.message_id().as_uuid().simple().to_string();
    let tracking = format!("TRK-{}", &id[id.len() - 12..]);
    shipment.tracking = Some(tracking.clone());
    shipment.units = m.items.iter().map(|i| u64::from(i.qty)).sum();
    shipment.attachment_bytes = attachment_bytes;
    ctx.send(
        ORDERS,
        &Shipped {
            order: m.order,
            tracking,
            attachment_bytes,
        },
    )?;
    Ok(())
}

/// The Shipping endpoint.
pub fn endpoint(deps: &Deps) -> anyhow::Result<Endpoint> {
    Ok(deps
        .builder(SHIPPING)
        .handler(handler_fn(|m: &Ship| m.order.clone(), on_ship))
        .build()?)
}
