//! A client for a DynamoDB-compatible endpoint (DynamoDB Local, moto,
//! LocalStack) from environment variables, without `aws-config`.

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use exactly::StoreError;

/// A client for `endpoint` (e.g. `http://127.0.0.1:8000`) with static
/// credentials from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
/// `AWS_SESSION_TOKEN`, and the region from `AWS_REGION` (default
/// `us-east-1`). Each call gives up after 10 s (3 attempts), then fails
/// `Unavailable`.
///
/// For AWS itself build the client with `aws-config`
/// (`aws_sdk_dynamodb::Client::new(&aws_config::load_from_env().await)`),
/// which knows every credential source, and pass it to
/// [`DynamoDbStore::new`](crate::DynamoDbStore::new).
pub fn endpoint_client(endpoint: &str) -> Result<Client, StoreError> {
    let var = |name: &str| std::env::var(name).ok();
    let (Some(id), Some(secret)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) else {
        return Err(StoreError::generic(
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set for a DynamoDB endpoint",
        ));
    };
    let credentials = Credentials::new(id, secret, var("AWS_SESSION_TOKEN"), None, "environment");
    let region = var("AWS_REGION").unwrap_or_else(|| "us-east-1".to_owned());
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new(region))
        .credentials_provider(credentials)
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(Duration::from_secs(5))
                .operation_timeout(Duration::from_secs(10))
                .build(),
        )
        .build();
    Ok(Client::from_conf(config))
}
