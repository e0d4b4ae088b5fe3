//! [`ReqwestExecutor`]: performs captured [`HttpCall`]s over HTTP.

use std::time::Duration;

use async_trait::async_trait;
use exactly::{CallError, CallExecutor, CallResult, HttpCall};
use reqwest::{Client, Method, StatusCode};

/// Makes captured calls with `reqwest`, sending the call's idempotency key as
/// the `Idempotency-Key` header on every try.
#[derive(Clone, Debug)]
pub struct ReqwestExecutor {
    client: Client,
}

impl Default for ReqwestExecutor {
    fn default() -> Self {
        Self::new(Duration::from_secs(10))
    }
}

impl ReqwestExecutor {
    /// An executor whose requests time out after `timeout` (a timeout is
    /// retried with the same key, so it is safe).
    pub fn new(timeout: Duration) -> Self {
        let client = Client::builder()
            .timeout(timeout)
            .build()
            .unwrap_or_else(|_| Client::new());
        Self { client }
    }

    /// An executor using a configured client (proxies, TLS roots, ...).
    pub fn with_client(client: Client) -> Self {
        Self { client }
    }

    async fn send(
        &self,
        call: &HttpCall,
        method: Method,
        url: &str,
        body: bool,
    ) -> Result<reqwest::Response, CallError> {
        let mut request = self
            .client
            .request(method, url)
            .header("idempotency-key", &call.idempotency_key);
        if body {
            for (name, value) in &call.headers {
                request = request.header(name, value);
            }
            request = request.body(call.body.clone());
        }
        // Connection errors and timeouts may or may not have reached the
        // server: retry with the same key.
        request
            .send()
            .await
            .map_err(|e| CallError::Transient(format!("{}: {e}", call.name)))
    }
}

/// Whether a status is a definitive answer (retrying cannot change it).
fn definitive(status: StatusCode) -> bool {
    status.as_u16() < 500
        && status != StatusCode::REQUEST_TIMEOUT
        && status != StatusCode::TOO_MANY_REQUESTS
        // Stripe-style "a request with this key is still in progress".
        && status != StatusCode::CONFLICT
}

async fn into_result(
    call: &HttpCall,
    response: reqwest::Response,
    from_check: bool,
) -> Result<CallResult, CallError> {
    let status = response.status();
    let headers = response
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let body = response
        .bytes()
        .await
        .map_err(|e| CallError::Transient(format!("{}: reading the answer: {e}", call.name)))?;
    Ok(CallResult {
        entity: String::new(),
        name: call.name.clone(),
        idempotency_key: call.idempotency_key.clone(),
        status: status.as_u16(),
        headers,
        body,
        from_check,
        release: None,
    })
}

impl ReqwestExecutor {
    /// The caller's half of the exactly-once protocol between two exactly
    /// services: store the request under the call's key (`PUT`, idempotent),
    /// then execute it (`POST`, which returns the stored response on every
    /// repeat). The `DELETE` comes later, from the runtime, once the
    /// response has been handled.
    async fn exactly_rpc(&self, call: &HttpCall) -> Result<CallResult, CallError> {
        let url = format!(
            "{}/exactly/requests/{}",
            call.url.trim_end_matches('/'),
            call.idempotency_key
        );
        let stored = self.send(call, Method::PUT, &url, true).await?;
        if !stored.status().is_success() {
            // 410: released already (a stale retry); 422: a different request
            // under this key. Either way an answer, not something to retry.
            return answer(call, stored).await;
        }
        let executed = self.send(call, Method::POST, &url, false).await?;
        let mut result = answer(call, executed).await?;
        result.release = Some(url);
        Ok(result)
    }
}

/// A definitive answer, or `Transient` if retrying could change it.
async fn answer(call: &HttpCall, response: reqwest::Response) -> Result<CallResult, CallError> {
    let status = response.status();
    if !definitive(status) {
        return Err(CallError::Transient(format!(
            "{}: answered {status}",
            call.name
        )));
    }
    into_result(call, response, false).await
}

#[async_trait]
impl CallExecutor for ReqwestExecutor {
    async fn execute(&self, call: &HttpCall) -> Result<CallResult, CallError> {
        if call.method == exactly::call::EXACTLY_RPC {
            return self.exactly_rpc(call).await;
        }
        let method = Method::from_bytes(call.method.as_bytes())
            .map_err(|e| CallError::Permanent(format!("{}: bad method: {e}", call.name)))?;
        if let Some(check) = &call.check {
            let answer = self.send(call, Method::GET, check, false).await?;
            match answer.status() {
                s if s.is_success() => return into_result(call, answer, true).await,
                StatusCode::NOT_FOUND => {}
                s => {
                    return Err(CallError::Transient(format!(
                        "{}: check-before-retry answered {s}",
                        call.name
                    )));
                }
            }
        }
        let response = self.send(call, method, &call.url, true).await?;
        answer(call, response).await
    }
}
