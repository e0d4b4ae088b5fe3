//! Front-end errors, each a clear JSON answer with the right status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Why a request was refused. Answers `{"error": code, "message": text}`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrontError {
    /// No `Idempotency-Key` where one is required → 400.
    #[error("the Idempotency-Key header is required")]
    MissingKey,
    /// The key or principal is not acceptable → 400.
    #[error("{0}")]
    InvalidKey(exactly::InvalidName),
    /// Body over the configured limit → 413.
    #[error("the body exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// Not `application/json` → 415.
    #[error("expected content type application/json, got {0:?}")]
    UnsupportedMediaType(String),
    /// Malformed JSON → 400, naming the field.
    #[error("malformed JSON at {path}: {reason}")]
    MalformedJson {
        /// Where in the document (e.g. `items[0].sku`), `.` for the root.
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// The key was used before with a different request → 422.
    #[error("this Idempotency-Key was already used with a different request")]
    KeyReused,
    /// The principal could not be established → 401.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// Nothing known under this id for this principal → 404.
    #[error("no such intent")]
    NotFound,
    /// The store or broker failed; the client may retry with the same key → 503.
    #[error("temporarily unavailable, retry with the same Idempotency-Key: {0}")]
    Unavailable(String),
}

impl FrontError {
    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingKey | Self::InvalidKey(_) | Self::MalformedJson { .. } => {
                StatusCode::BAD_REQUEST
            }
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::KeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingKey => "missing_idempotency_key",
            Self::InvalidKey(_) => "invalid_key",
            Self::TooLarge { .. } => "body_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::MalformedJson { .. } => "malformed_json",
            Self::KeyReused => "idempotency_key_reused",
            Self::Unauthenticated(_) => "unauthenticated",
            Self::NotFound => "not_found",
            Self::Unavailable(_) => "unavailable",
        }
    }
}

impl IntoResponse for FrontError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({ "error": self.code(), "message": self.to_string() });
        if let Self::MalformedJson { path, .. } = &self {
            body["field"] = serde_json::Value::String(path.clone());
        }
        (self.status(), axum::Json(body)).into_response()
    }
}

impl From<exactly::SendError> for FrontError {
    fn from(e: exactly::SendError) -> Self {
        match e {
            exactly::SendError::InvalidName(name) => Self::InvalidKey(name),
            other => Self::Unavailable(other.to_string()),
        }
    }
}
