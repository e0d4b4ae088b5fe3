//! The one place that decides which SQS errors a caller may retry.

use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use exactly::TransportError;

/// Error codes SQS answers when a request may succeed later.
const TRANSIENT_CODES: &[&str] = &[
    "RequestThrottled",
    "ThrottlingException",
    "KmsThrottled",
    "ServiceUnavailable",
    "InternalError",
    "InternalFailure",
];

/// Error codes of a receipt handle that no longer names a leased message
/// (already deleted, lease run out, received again since).
const STALE_RECEIPT_CODES: &[&str] = &[
    "ReceiptHandleIsInvalid",
    "MessageNotInflight",
    "AWS.SimpleQueueService.MessageNotInflight",
];

/// The service's error code, if it answered with one.
pub(crate) fn code<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> Option<&str> {
    match error {
        SdkError::ServiceError(_) => error.code(),
        _ => None,
    }
}

/// Whether the queue named in the request does not exist.
pub(crate) fn is_missing_queue<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> bool {
    code(error).is_some_and(|c| c.contains("NonExistentQueue") || c == "QueueDoesNotExist")
}

/// Whether a receipt handle is stale: acking or nacking it is a no-op.
pub(crate) fn is_stale_receipt<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> bool {
    code(error).is_some_and(|c| STALE_RECEIPT_CODES.contains(&c))
}

/// Maps every SQS error: no answer (timeouts, connection failures), a
/// 5xx or a throttling code is [`TransportError::Unavailable`]; the rest
/// is [`TransportError::Generic`].
pub(crate) fn map_err<E>(error: SdkError<E>) -> TransportError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let transient = match &error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(_) => {
            let status = error.raw_response().map(|r| r.status().as_u16());
            status.is_some_and(|s| s >= 500)
                || code(&error).is_some_and(|c| TRANSIENT_CODES.contains(&c))
        }
        _ => false,
    };
    let message = DisplayErrorContext(&error).to_string();
    if transient {
        TransportError::unavailable(message)
    } else {
        TransportError::generic(message)
    }
}
