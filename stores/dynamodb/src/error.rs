//! The one place that maps DynamoDB errors to [`StoreError`].

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use exactly::StoreError;

/// DynamoDB's item size limit, in bytes (400 KB).
pub const MAX_ITEM_BYTES: usize = 400 * 1024;

/// Error codes DynamoDB answers when a retry later may succeed.
const TRANSIENT_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "ThrottlingException",
    "Throttling",
    "InternalServerError",
    "ServiceUnavailable",
    "TransactionConflictException",
    "LimitExceededException",
];

/// Whether an SDK error may go away on retry: the request timed out or
/// never got an answer (dispatch failure, dropped connection), the
/// service throttled (`ProvisionedThroughputExceededException`,
/// `RequestLimitExceeded`, `ThrottlingException`), or it failed on its side
/// (`InternalServerError`, any 5xx). The SDK has already retried these
/// itself by then (its standard retry mode).
pub fn is_transient<E: ProvideErrorMetadata>(error: &SdkError<E, HttpResponse>) -> bool {
    match error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(e) => {
            error
                .code()
                .is_some_and(|code| TRANSIENT_CODES.contains(&code))
                || e.raw().status().as_u16() >= 500
        }
        _ => false,
    }
}

/// Maps an error of an operation on `key` whose value had `size` bytes
/// (0 for reads): a failed `ConditionExpression` is a conflict, DynamoDB's
/// "Item size has exceeded" is [`StoreError::TooLarge`], transient errors
/// are [`StoreError::Unavailable`], the rest [`StoreError::Generic`].
pub(crate) fn map_err<E>(error: SdkError<E, HttpResponse>, key: &str, size: usize) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match error.code() {
        Some("ConditionalCheckFailedException") => StoreError::Conflict {
            key: key.to_owned(),
        },
        Some("ValidationException")
            if error
                .message()
                .is_some_and(|m| m.contains("Item size has exceeded")) =>
        {
            StoreError::TooLarge {
                key: key.to_owned(),
                size,
                limit: MAX_ITEM_BYTES,
            }
        }
        _ if is_transient(&error) => StoreError::unavailable(error),
        _ => StoreError::generic(error),
    }
}
