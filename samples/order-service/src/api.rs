//! The HTTP API.
//!
//! - `POST /orders` with an `Idempotency-Key`: the order becomes a
//!   `PlaceOrder` message exactly once (`exactly_http::IntentFront`); `202`
//!   with the order's URL. A repeat gets the same answer; the same key with
//!   a different body gets `422`.
//! - `GET /orders/{id}`: status, payment, shipment, invoice link.
//! - `GET /orders/{id}/invoice`: streams the invoice blob, checksum-verified.
//! - `GET /intents/{id}`: where the intent is (accepted, sent, processed).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRef, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use exactly::record::EntityRecord;
use exactly::{BlobStore, MessageId, Store};
use exactly_http::{FrontError, Intent, IntentFront};
use serde::Deserialize;
use serde_json::json;

use crate::messages::{Attachment, Item, ORDERS, PlaceOrder};
use crate::orders::{Order, Status};

/// Largest attachment accepted, decoded. It travels inline to Orders (the
/// front end has no claim check yet) and through the claim check after.
pub const MAX_ATTACHMENT_BYTES: usize = 512 * 1024;

/// The body of `POST /orders`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderRequest {
    /// Who orders.
    pub customer: String,
    /// At least one line.
    pub items: Vec<Item>,
    /// Optional file for the parcel.
    #[serde(default)]
    pub attachment: Option<Attachment>,
}

/// The API's shared state.
#[derive(Clone, Debug)]
pub struct Api {
    front: IntentFront,
    store: Arc<dyn Store>,
    blobs: Arc<dyn BlobStore>,
}

impl FromRef<Api> for IntentFront {
    fn from_ref(api: &Api) -> Self {
        api.front.clone()
    }
}

/// Why a request failed: `{"error": code, "message": text}`.
#[derive(Debug)]
enum ApiError {
    Front(FrontError),
    Invalid(&'static str, String),
    NotFound(String),
    Unavailable(String),
}

impl From<FrontError> for ApiError {
    fn from(e: FrontError) -> Self {
        Self::Front(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            Self::Front(e) => return e.into_response(),
            Self::Invalid("attachment_too_large", m) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "attachment_too_large", m)
            }
            Self::Invalid(code, m) => (StatusCode::BAD_REQUEST, code, m),
            Self::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m),
            Self::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", m),
        };
        (status, Json(json!({ "error": code, "message": message }))).into_response()
    }
}

/// The routes, with the front end's `GET /intents/{id}`.
pub fn routes(front: IntentFront, store: Arc<dyn Store>, blobs: Arc<dyn BlobStore>) -> Router {
    let api = Api {
        front: front.clone(),
        store,
        blobs,
    };
    Router::new()
        .route("/orders", post(place))
        .route("/orders/{id}", get(show))
        .route("/orders/{id}/invoice", get(invoice))
        .with_state(api)
        .merge(front.status_routes())
}

/// The order id of a request: derived from the caller and the key, so every
/// retry of a request names the same order.
pub fn order_id(principal: &str, key: &str) -> String {
    MessageId::derived("order-service:orders", &format!("{principal}\n{key}")).to_string()
}

fn validate(order: &OrderRequest) -> Result<(), ApiError> {
    let invalid = |m: &str| Err(ApiError::Invalid("invalid_order", m.to_owned()));
    let text_ok =
        |s: &str, max: usize| !s.is_empty() && s.len() <= max && !s.chars().any(char::is_control);
    if !text_ok(&order.customer, 200) {
        return invalid("customer: 1 to 200 characters, no control characters");
    }
    if order.items.is_empty() || order.items.len() > 100 {
        return invalid("items: 1 to 100 lines");
    }
    for item in &order.items {
        if !text_ok(&item.sku, 64)
            || !(1..=1000).contains(&item.qty)
            || item.unit_cents > 1_000_000_000
        {
            return invalid(
                "items: sku of 1 to 64 characters, qty 1 to 1000, unit_cents at most 10^9",
            );
        }
    }
    if let Some(a) = &order.attachment {
        if !text_ok(&a.name, 200) || !text_ok(&a.content_type, 100) {
            return invalid("attachment: name and content_type of 1 to 200 characters");
        }
        let bytes = STANDARD.decode(&a.data_base64).map_err(|e| {
            ApiError::Invalid("invalid_order", format!("attachment.data_base64: {e}"))
        })?;
        if bytes.len() > MAX_ATTACHMENT_BYTES {
            return Err(ApiError::Invalid(
                "attachment_too_large",
                format!(
                    "attachment of {} bytes exceeds {MAX_ATTACHMENT_BYTES}",
                    bytes.len()
                ),
            ));
        }
    }
    Ok(())
}

async fn place(State(api): State<Api>, intent: Intent<OrderRequest>) -> Result<Response, ApiError> {
    let key = intent.key.clone().ok_or(FrontError::MissingKey)?;
    validate(&intent.body)?;
    let order = order_id(&intent.principal, &key);
    let message = PlaceOrder {
        order: order.clone(),
        customer: intent.body.customer.clone(),
        items: intent.body.items.clone(),
        attachment: intent.body.attachment.clone(),
    };
    let answer = api.front.submit(&intent, ORDERS, &message).await?;
    let url = format!("/orders/{order}");
    let body = json!({
        "order_id": order,
        "order_url": url,
        "intent_id": answer.id,
        "status_url": answer.location,
    });
    Ok((StatusCode::ACCEPTED, [(header::LOCATION, url)], Json(body)).into_response())
}

/// The Orders state of `id`, if Orders has handled it.
async fn load(api: &Api, id: &str) -> Result<Order, ApiError> {
    if id.parse::<MessageId>().is_err() {
        return Err(ApiError::NotFound(format!("no order {id:?}")));
    }
    let key = format!("e/{ORDERS}/{id}");
    let unavailable = |e: &dyn std::fmt::Display| ApiError::Unavailable(e.to_string());
    let found = api.store.get(&key).await.map_err(|e| unavailable(&e))?;
    let state = match found {
        Some(v) => {
            EntityRecord::decode(&key, &v.value)
                .map_err(|e| unavailable(&e))?
                .state
        }
        None => None,
    };
    let Some(state) = state else {
        return Err(ApiError::NotFound(format!(
            "no order {id} yet (if it was just accepted, it is on its way: retry shortly)"
        )));
    };
    serde_json::from_slice(&state).map_err(|e| unavailable(&e))
}

async fn show(State(api): State<Api>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let order = load(&api, &id).await?;
    let payment = match order.status {
        Status::New | Status::Placed => "pending",
        Status::PaymentFailed => "failed",
        Status::Paid | Status::Shipped => "paid",
    };
    let body = json!({
        "id": id,
        "status": order.status,
        "customer": order.customer,
        "items": order.items,
        "total_cents": order.total_cents,
        "attachment": order.attachment,
        "payment": { "status": payment, "charge_id": order.charge_id, "error": order.payment_error },
        "shipment": { "tracking": order.tracking },
        "invoice_url": order.invoice.as_ref().map(|_| format!("/orders/{id}/invoice")),
    });
    Ok(Json(body).into_response())
}

async fn invoice(State(api): State<Api>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let order = load(&api, &id).await?;
    let Some(blob) = order.invoice else {
        return Err(ApiError::NotFound(format!("order {id} has no invoice yet")));
    };
    // Streamed, never held whole; a checksum mismatch fails the stream.
    let stream = exactly::blob::read(api.blobs.as_ref(), &blob)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let headers = [
        (header::CONTENT_TYPE, blob.content_type.clone()),
        (header::CONTENT_LENGTH, blob.size.to_string()),
    ];
    Ok((headers, Body::from_stream(stream)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(customer: &str, qty: u32) -> OrderRequest {
        OrderRequest {
            customer: customer.into(),
            items: vec![Item {
                sku: "gift-box".into(),
                qty,
                unit_cents: 2500,
            }],
            attachment: None,
        }
    }

    #[test]
    fn an_order_id_follows_from_caller_and_key() {
        assert_eq!(order_id("anonymous", "k1"), order_id("anonymous", "k1"));
        assert_ne!(order_id("anonymous", "k1"), order_id("anonymous", "k2"));
        assert_ne!(order_id("alice", "k1"), order_id("bob", "k1"));
    }

    #[test]
    fn bad_orders_are_refused_with_a_reason() {
        assert!(validate(&request("ada", 1)).is_ok());
        assert!(validate(&request("", 1)).is_err());
        assert!(validate(&request("ada", 0)).is_err());
        let mut big = request("ada", 1);
        big.attachment = Some(Attachment {
            name: "a".into(),
            content_type: "application/octet-stream".into(),
            data_base64: STANDARD.encode(vec![0u8; MAX_ATTACHMENT_BYTES + 1]),
        });
        assert!(matches!(
            validate(&big),
            Err(ApiError::Invalid("attachment_too_large", _))
        ));
        big.attachment = Some(Attachment {
            name: "a".into(),
            content_type: "text/plain".into(),
            data_base64: "not base64!".into(),
        });
        assert!(matches!(
            validate(&big),
            Err(ApiError::Invalid("invalid_order", _))
        ));
    }
}
