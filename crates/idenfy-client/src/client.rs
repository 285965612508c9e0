//! `IdenfyClient`: the iDenfy KYC v2 calls (token, status, data) over one `reqwest::Client`,
//! with Basic auth, error mapping, retries for the read calls, logs and metrics.

use std::{
    fmt,
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::Utc;
use idenfy_core::{
    AuthToken, IdenfyApi, IdenfyError, IdenfyErrorKind, MintedToken, ParentId, ScanRef,
    StatusReport, VerificationStatus,
    settings::{Backoff, Jitter},
};
use reqwest::{StatusCode, Url, header};
use serde::Serialize;
use serde_json::{Map, Value};
use tracing::Instrument;

use crate::{
    config::{BuildError, ClientConfig, RetryPolicy, Secret, TokenOptions},
    error,
};

/// iDenfy's documented default token lifetime, used when neither the response nor our
/// configuration names one.
const DEFAULT_EXPIRY_SECS: u64 = 3600;

/// The iDenfy API of one environment. Cheap to clone (one shared connection pool).
#[derive(Clone)]
pub struct IdenfyClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base_url: String,
    token_url: Url,
    status_url: Url,
    data_url: Url,
    redirect_url: Url,
    api_key: String,
    api_secret: Secret,
    token_options: TokenOptions,
    retry: RetryPolicy,
    connect_timeout: Duration,
    request_timeout: Duration,
}

impl fmt::Debug for IdenfyClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("IdenfyClient")
            .field("base_url", &inner.base_url)
            .field("connect_timeout", &inner.connect_timeout)
            .field("request_timeout", &inner.request_timeout)
            .field("token_options", &inner.token_options)
            .field("retry", &inner.retry)
            .finish_non_exhaustive()
    }
}

/// The three endpoints, named for logs and metric labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint {
    Token,
    Status,
    Data,
}

impl Endpoint {
    fn as_str(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Status => "status",
            Self::Data => "data",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Self::Token => "/api/v2/token",
            Self::Status => "/api/v2/status",
            Self::Data => "/api/v2/data",
        }
    }
}

/// A 2xx answer.
struct Reply {
    status: StatusCode,
    body: Vec<u8>,
}

/// A failed attempt, with the server's `Retry-After` when it sent one.
struct Failure {
    error: IdenfyError,
    retry_after: Option<Duration>,
}

/// The body of `POST /api/v2/token`: `clientId` plus only the configured options.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TokenRequest<'a> {
    client_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    theme: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expiry_time: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_length: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    locale: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    success_url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unverified_url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    callback_url: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ScanRefRequest<'a> {
    scan_ref: &'a str,
}

impl IdenfyClient {
    /// Validates the configuration and builds the one `reqwest::Client` (with the timeouts)
    /// every call shares.
    pub fn new(config: ClientConfig) -> Result<Self, BuildError> {
        let ClientConfig {
            base_url,
            api_key,
            api_secret,
            connect_timeout,
            request_timeout,
            token_options,
            retry,
        } = config;
        if api_key.is_empty() || api_secret.is_empty() {
            return Err(BuildError::MissingCredentials);
        }
        if retry.budget.is_zero() {
            return Err(BuildError::InvalidSetting("retry.budget must be positive"));
        }
        if retry.max_attempts == 0 {
            return Err(BuildError::InvalidSetting(
                "retry.max_attempts must be at least 1",
            ));
        }
        if request_timeout.is_zero() || connect_timeout.is_zero() {
            return Err(BuildError::InvalidSetting("timeouts must be positive"));
        }
        let base_url = normalise_base_url(&base_url)?;
        let endpoint = |path: &str| {
            Url::parse(&format!("{base_url}{path}"))
                .map_err(|_| BuildError::InvalidBaseUrl("cannot append the API path"))
        };
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .timeout(request_timeout)
            // A redirect would re-send the credentials somewhere we did not configure.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("idenfy-sessions/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(BuildError::Http)?;
        let inner = Inner {
            http,
            token_url: endpoint(Endpoint::Token.path())?,
            status_url: endpoint(Endpoint::Status.path())?,
            data_url: endpoint(Endpoint::Data.path())?,
            redirect_url: endpoint("/api/v2/redirect")?,
            base_url,
            api_key,
            api_secret,
            token_options,
            retry,
            connect_timeout,
            request_timeout,
        };
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The normalised base URL (no trailing slash).
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// iDenfy's hosted-UI link for a token: `{base}/api/v2/redirect?authToken=...`.
    pub fn redirect_url(&self, auth_token: &AuthToken) -> String {
        self.inner.redirect_for(auth_token)
    }
}

fn normalise_base_url(raw: &str) -> Result<String, BuildError> {
    let url = Url::parse(raw.trim()).map_err(|_| BuildError::InvalidBaseUrl("does not parse"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(BuildError::InvalidBaseUrl("scheme must be http or https"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(BuildError::InvalidBaseUrl("must not carry credentials"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(BuildError::InvalidBaseUrl(
            "must not have a query or fragment",
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

impl Inner {
    fn redirect_for(&self, auth_token: &AuthToken) -> String {
        let mut url = self.redirect_url.clone();
        url.query_pairs_mut()
            .append_pair("authToken", auth_token.expose());
        url.into()
    }

    fn url(&self, endpoint: Endpoint) -> &Url {
        match endpoint {
            Endpoint::Token => &self.token_url,
            Endpoint::Status => &self.status_url,
            Endpoint::Data => &self.data_url,
        }
    }

    /// One HTTP exchange. Logs and counts it; never retries.
    async fn send_once<B: Serialize + Sync + ?Sized>(
        &self,
        endpoint: Endpoint,
        body: &B,
        attempt: u32,
    ) -> Result<Reply, Failure> {
        let started = Instant::now();
        let result = self.exchange(endpoint, body).await;
        let elapsed = started.elapsed();
        let (status, outcome) = match &result {
            Ok(reply) => (Some(reply.status.as_u16()), "ok"),
            Err(failure) => (failure.error.http_status, failure.error.kind.as_str()),
        };
        let elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        tracing::debug!(
            endpoint = endpoint.path(),
            status,
            elapsed_ms,
            attempt,
            outcome,
            "iDenfy call"
        );
        metrics::counter!(
            "idenfy_api_requests_total",
            "endpoint" => endpoint.as_str(),
            "outcome" => outcome
        )
        .increment(1);
        metrics::histogram!("idenfy_api_request_duration_seconds", "endpoint" => endpoint.as_str())
            .record(elapsed.as_secs_f64());
        result
    }

    async fn exchange<B: Serialize + Sync + ?Sized>(
        &self,
        endpoint: Endpoint,
        body: &B,
    ) -> Result<Reply, Failure> {
        let transport = |err| Failure {
            error: error::from_reqwest(err),
            retry_after: None,
        };
        let response = self
            .http
            .post(self.url(endpoint).clone())
            .basic_auth(&self.api_key, Some(self.api_secret.expose()))
            .json(body)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        if status.is_success() {
            let body = response.bytes().await.map_err(transport)?;
            return Ok(Reply {
                status,
                body: body.to_vec(),
            });
        }
        let retry_after = retry_after(&response);
        let source = response.error_for_status_ref().err();
        // An unreadable error body only costs us iDenfy's message; the status still decides.
        let body = response.bytes().await.unwrap_or_default();
        Err(Failure {
            error: error::from_response(status, &body, source),
            retry_after,
        })
    }

    /// `send_once`, retried on transient failures with jittered exponential back-off, all
    /// of it within [`RetryPolicy::budget`].
    async fn send_with_retry<B: Serialize + Sync + ?Sized>(
        &self,
        endpoint: Endpoint,
        body: &B,
    ) -> Result<Reply, IdenfyError> {
        let deadline = Instant::now() + self.retry.budget;
        let mut attempt = 1;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let sent = tokio::time::timeout(left, self.send_once(endpoint, body, attempt)).await;
            let failure = match sent {
                Ok(Ok(reply)) => return Ok(reply),
                Ok(Err(failure)) => failure,
                Err(_) => return Err(error::budget_spent(self.retry.budget)),
            };
            if attempt >= self.retry.max_attempts || !is_retryable(failure.error.kind) {
                return Err(failure.error);
            }
            let delay = backoff(&self.retry, attempt, failure.retry_after);
            // A retry needs its back-off and some time to answer; without both, the error
            // we have is the answer.
            if Instant::now() + delay + MIN_ATTEMPT >= deadline {
                return Err(failure.error);
            }
            tracing::debug!(
                endpoint = endpoint.path(),
                attempt,
                kind = failure.error.kind.as_str(),
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                "retrying iDenfy call"
            );
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    async fn mint(&self, client_id: &ParentId) -> Result<MintedToken, IdenfyError> {
        let minted_at = Utc::now();
        let options = &self.token_options;
        let request = TokenRequest {
            client_id: client_id.as_str(),
            theme: options.theme.as_deref(),
            expiry_time: options.expiry_time_secs,
            session_length: options.session_length_secs,
            locale: options.locale.as_deref(),
            success_url: options.success_url.as_deref(),
            error_url: options.error_url.as_deref(),
            unverified_url: options.unverified_url.as_deref(),
            callback_url: options.callback_url.as_deref(),
        };
        // Never retried, not even on a timeout: iDenfy may have minted (and billed) already.
        let reply = self
            .send_once(Endpoint::Token, &request, 1)
            .await
            .map_err(|f| f.error)?;
        let body = json_object(&reply)?;
        let auth_token = required_str(&body, "authToken").ok_or_else(|| {
            error::unexpected_payload(reply.status, "token response without authToken")
        })?;
        let scan_ref = required_str(&body, "scanRef").ok_or_else(|| {
            error::unexpected_payload(reply.status, "token response without scanRef")
        })?;
        let auth_token = AuthToken::new(auth_token);
        let redirect_url = match required_str(&body, "redirectUrl") {
            Some(url) => url.to_owned(),
            None => self.redirect_for(&auth_token),
        };
        let expiry_secs = body
            .get("expiryTime")
            .and_then(as_seconds)
            .or(options.expiry_time_secs.map(u64::from))
            .unwrap_or(DEFAULT_EXPIRY_SECS);
        let expires_at = i64::try_from(expiry_secs)
            .ok()
            .and_then(chrono::TimeDelta::try_seconds)
            .and_then(|lifetime| minted_at.checked_add_signed(lifetime));
        Ok(MintedToken {
            auth_token,
            scan_ref: ScanRef::new(scan_ref),
            redirect_url,
            expires_at,
            minted_at,
        })
    }

    async fn status(&self, scan_ref: &ScanRef) -> Result<StatusReport, IdenfyError> {
        reject_empty(scan_ref)?;
        let request = ScanRefRequest {
            scan_ref: scan_ref.as_str(),
        };
        let reply = self.send_with_retry(Endpoint::Status, &request).await?;
        let body = json_object(&reply)?;
        if body.get("scanRef").and_then(Value::as_str) != Some(scan_ref.as_str()) {
            return Err(error::unexpected_payload(
                reply.status,
                "status response names another scanRef",
            ));
        }
        let status = required_str(&body, "status").ok_or_else(|| {
            error::unexpected_payload(reply.status, "status response without status")
        })?;
        Ok(StatusReport {
            scan_ref: scan_ref.clone(),
            status: VerificationStatus::parse(status),
        })
    }

    async fn data(&self, scan_ref: &ScanRef) -> Result<Map<String, Value>, IdenfyError> {
        reject_empty(scan_ref)?;
        let request = ScanRefRequest {
            scan_ref: scan_ref.as_str(),
        };
        let reply = self.send_with_retry(Endpoint::Data, &request).await?;
        let mut body = json_object(&reply)?;
        match body.get("scanRef") {
            None | Some(Value::Null) => {}
            Some(echoed) if echoed.as_str() == Some(scan_ref.as_str()) => {}
            Some(_) => {
                return Err(error::unexpected_payload(
                    reply.status,
                    "data response names another scanRef",
                ));
            }
        }
        Ok(flatten_data(&mut body))
    }
}

impl IdenfyApi for IdenfyClient {
    async fn mint(&self, client_id: &ParentId) -> Result<MintedToken, IdenfyError> {
        let span = tracing::debug_span!("idenfy.mint", client_id = %client_id);
        self.inner.mint(client_id).instrument(span).await
    }

    async fn status(&self, scan_ref: &ScanRef) -> Result<StatusReport, IdenfyError> {
        let span = tracing::debug_span!("idenfy.status", scan_ref = %scan_ref);
        self.inner.status(scan_ref).instrument(span).await
    }

    async fn data(&self, scan_ref: &ScanRef) -> Result<Map<String, Value>, IdenfyError> {
        let span = tracing::debug_span!("idenfy.data", scan_ref = %scan_ref);
        self.inner.data(scan_ref).instrument(span).await
    }
}

/// The least time a retry must have left to be worth starting.
const MIN_ATTEMPT: Duration = Duration::from_millis(500);

fn is_retryable(kind: IdenfyErrorKind) -> bool {
    matches!(
        kind,
        IdenfyErrorKind::Server
            | IdenfyErrorKind::RateLimited
            | IdenfyErrorKind::Timeout
            | IdenfyErrorKind::Connect
            | IdenfyErrorKind::Transport
    )
}

/// The wait before retry number `attempt` (1 = the first retry): the server's
/// `Retry-After` when given, else `base * 2^(attempt-1)` with "equal jitter" (a random
/// point in its upper half, so concurrent callers spread out); both capped by `max_delay`.
fn backoff(policy: &RetryPolicy, attempt: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(wait) = retry_after {
        return wait.min(policy.max_delay);
    }
    Backoff::new(policy.base_delay, policy.max_delay)
        .with_jitter(Jitter::Equal)
        .delay(attempt)
}

/// `Retry-After` in seconds on 429 and 503 (the HTTP-date form is ignored).
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    if !matches!(response.status().as_u16(), 429 | 503) {
        return None;
    }
    let value = response.headers().get(header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

fn reject_empty(scan_ref: &ScanRef) -> Result<(), IdenfyError> {
    if scan_ref.as_str().trim().is_empty() {
        return Err(IdenfyError::new(
            IdenfyErrorKind::InvalidRequest,
            "empty scanRef",
        ));
    }
    Ok(())
}

fn json_object(reply: &Reply) -> Result<Map<String, Value>, IdenfyError> {
    match serde_json::from_slice::<Value>(&reply.body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(error::unexpected_payload(
            reply.status,
            "response is not a JSON object",
        )),
        Err(err) => {
            let mut error = error::unexpected_payload(reply.status, "response is not JSON");
            error.source = Some(Box::new(err));
            Err(error)
        }
    }
}

/// A non-empty string field.
fn required_str<'a>(body: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    body.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
}

/// A non-negative whole number of seconds, as a number or a numeric string.
fn as_seconds(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Document fields flat: top-level fields, with those nested under `data` merged over them.
fn flatten_data(body: &mut Map<String, Value>) -> Map<String, Value> {
    let nested = match body.get("data") {
        Some(Value::Object(_) | Value::Null) => body.remove("data"),
        _ => None,
    };
    let mut flat = std::mem::take(body);
    if let Some(Value::Object(nested)) = nested {
        flat.extend(nested);
    }
    flat
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_jittered_and_capped() {
        let policy = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(2),
            budget: Duration::from_secs(8),
        };
        for _ in 0..50 {
            let first = backoff(&policy, 1, None);
            assert!(first >= Duration::from_millis(100) && first <= Duration::from_millis(200));
            let third = backoff(&policy, 3, None);
            assert!(third >= Duration::from_millis(400) && third <= Duration::from_millis(800));
            let late = backoff(&policy, 30, None);
            assert!(late >= Duration::from_secs(1) && late <= Duration::from_secs(2));
        }
        assert_eq!(
            backoff(&policy, 1, Some(Duration::from_secs(1))),
            Duration::from_secs(1)
        );
        assert_eq!(
            backoff(&policy, 1, Some(Duration::from_secs(60))),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn base_urls_are_normalised_and_checked() {
        assert_eq!(
            normalise_base_url("https://ivs.idenfy.com/")
                .ok()
                .as_deref(),
            Some("https://ivs.idenfy.com")
        );
        assert_eq!(
            normalise_base_url("http://127.0.0.1:9/p/").ok().as_deref(),
            Some("http://127.0.0.1:9/p")
        );
        for bad in [
            "",
            "ivs.idenfy.com",
            "ftp://x",
            "https://k:s@ivs.idenfy.com",
            "https://x/?a=b",
        ] {
            assert!(normalise_base_url(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn nested_data_wins_over_flat() {
        let mut body = serde_json::json!({
            "scanRef": "s", "docFirstName": "OLD", "data": {"docFirstName": "NEW", "docLastName": "L"}
        });
        let Value::Object(map) = &mut body else {
            unreachable!()
        };
        let flat = flatten_data(map);
        assert_eq!(
            Value::Object(flat),
            serde_json::json!({"scanRef": "s", "docFirstName": "NEW", "docLastName": "L"})
        );
    }
}
