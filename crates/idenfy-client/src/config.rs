//! Client configuration: credentials (redacted in `Debug`), timeouts, token options, retries.

use std::{fmt, time::Duration};

use secrecy::{ExposeSecret, SecretString};

/// iDenfy's API host.
pub const DEFAULT_BASE_URL: &str = "https://ivs.idenfy.com";

/// A credential: a [`secrecy::SecretString`], so `Debug` never shows the value, there is no
/// `Display`, and the memory is zeroed when the last copy is dropped.
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    /// Wraps a credential.
    pub fn new(raw: impl Into<String>) -> Self {
        Self(SecretString::from(raw.into()))
    }

    /// The secret value; call only where it leaves the process on purpose.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// Whether the credential is the empty string (not configured).
    pub fn is_empty(&self) -> bool {
        self.expose().is_empty()
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for Secret {}

impl From<Secret> for SecretString {
    /// The credential as a plain [`SecretString`], for code that takes secrecy's types.
    fn from(secret: Secret) -> Self {
        secret.0
    }
}

impl From<String> for Secret {
    fn from(raw: String) -> Self {
        Self::new(raw)
    }
}

impl From<&str> for Secret {
    fn from(raw: &str) -> Self {
        Self::new(raw)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Per-token overrides sent with every `POST /api/v2/token`. `None` leaves the field out of
/// the request, so iDenfy applies the dashboard default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenOptions {
    /// Theme uuid.
    pub theme: Option<String>,
    /// `expiryTime`: seconds the token can be started (iDenfy: 0..=2_592_000, default 3600).
    pub expiry_time_secs: Option<u32>,
    /// `sessionLength`: seconds the user has once the UI is open (iDenfy: 60..=3600).
    pub session_length_secs: Option<u32>,
    /// `locale`: the hosted UI's language (e.g. `en`).
    pub locale: Option<String>,
    /// `successUrl`: where the browser goes after an approved verification.
    pub success_url: Option<String>,
    /// `errorUrl`: where the browser goes after a failed verification.
    pub error_url: Option<String>,
    /// `unverifiedUrl`: where the browser goes when the user leaves unverified.
    pub unverified_url: Option<String>,
    /// Per-session webhook receiver (needs a permission on the iDenfy account).
    pub callback_url: Option<String>,
}

/// Default [`ClientConfig::request_timeout`]: also how long a token call may take, which a
/// recreation claim must outlast.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Default [`RetryPolicy::budget`]: 8 s, so a status poll that gets no answer leaves a
/// 15 s request deadline 7 s for its store reads and writes.
pub const DEFAULT_RETRY_BUDGET: Duration = Duration::from_secs(8);

/// Retries of `status` and `data` on transient failures (5xx, 429, timeout, transport).
/// Never applied to `mint`: every token call may bill a credit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (1 = no retry).
    pub max_attempts: u32,
    /// Back-off before the first retry; doubled for each further one, with jitter.
    pub base_delay: Duration,
    /// Upper bound of any back-off, including a server's `Retry-After`.
    pub max_delay: Duration,
    /// The whole call, every attempt and back-off included, ends within this: an attempt
    /// gets at most what is left of it, and no retry starts that could not finish. Keeps
    /// a status poll well inside a request deadline (the app's is 15 s).
    pub budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(2),
            budget: DEFAULT_RETRY_BUDGET,
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }
}

/// Everything [`crate::IdenfyClient::new`] needs. `Debug` shows neither key nor secret.
#[derive(Clone)]
pub struct ClientConfig {
    /// Scheme and host (and optional path prefix) of the API, without a trailing `/api/...`.
    pub base_url: String,
    /// Basic-auth user name.
    pub api_key: String,
    /// Basic-auth password.
    pub api_secret: Secret,
    /// Time allowed to establish a connection.
    pub connect_timeout: Duration,
    /// Time allowed for one whole request (connect, send, response body).
    pub request_timeout: Duration,
    /// Overrides sent with every token call.
    pub token_options: TokenOptions,
    /// Retries of `status` and `data`.
    pub retry: RetryPolicy,
}

impl ClientConfig {
    /// Defaults for everything but the credentials.
    pub fn new(api_key: impl Into<String>, api_secret: impl Into<Secret>) -> Self {
        Self {
            api_key: api_key.into(),
            api_secret: api_secret.into(),
            ..Self::default()
        }
    }

    /// The same configuration against another host (a sandbox, `idenfy-sim`, a mock).
    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = base_url.into();
        self
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            api_key: String::new(),
            api_secret: Secret::new(""),
            connect_timeout: Duration::from_secs(3),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            token_options: TokenOptions::default(),
            retry: RetryPolicy::default(),
        }
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &"[redacted]")
            .field("api_secret", &self.api_secret)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("token_options", &self.token_options)
            .field("retry", &self.retry)
            .finish()
    }
}

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The base URL does not parse, is not http(s), or carries credentials or a query.
    #[error("invalid iDenfy base URL: {0}")]
    InvalidBaseUrl(&'static str),
    /// The API key or secret is empty.
    #[error("the iDenfy API key and secret must not be empty")]
    MissingCredentials,
    /// A setting is out of range.
    #[error("invalid iDenfy client setting: {0}")]
    InvalidSetting(&'static str),
    /// reqwest could not build its client (TLS backend).
    #[error("could not build the HTTP client")]
    Http(#[source] reqwest::Error),
}
