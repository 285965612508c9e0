//! Configuration of one simulator instance: credentials, defaults, webhook delivery, bind address.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Everything a [`crate::Sim`] needs to start. `Default` gives test credentials and a random
/// loopback port, so `Sim::start(SimConfig::default())` is enough for most tests.
#[derive(Clone)]
pub struct SimConfig {
    /// Basic-auth username expected on `/api/v2/*`.
    pub api_key: String,
    /// Basic-auth password expected on `/api/v2/*`.
    pub api_secret: String,
    /// Key for the `Idenfy-Signature` HMAC-SHA256 on webhooks.
    pub webhook_signing_key: String,
    /// Where webhooks go (a token's `callbackUrl` overrides it for that session).
    pub webhook_url: Option<String>,
    /// When set, a decision first moves to `REVIEWING` and sends an AUTO webhook with
    /// `final: false`, then (after [`SimConfig::manual_review_delay`]) the MANUAL webhook
    /// with `final: true`.
    pub manual_review: bool,
    /// How long the human review takes in the simulator (real time).
    pub manual_review_delay: Duration,
    /// `expiryTime` when the token request leaves it out (iDenfy: 3600 s).
    pub default_expiry_time_secs: u64,
    /// `sessionLength` when the token request leaves it out (iDenfy: 600 s).
    pub default_session_length_secs: u64,
    /// Total delivery attempts per webhook (first try included).
    pub webhook_max_attempts: u32,
    /// Pause before the first retry; it doubles for each further retry.
    pub webhook_initial_backoff: Duration,
    /// Per-attempt timeout for webhook POSTs (iDenfy expects an answer within 10 s).
    pub webhook_timeout: Duration,
    /// Listen address; must be a loopback address. Port 0 picks a free port.
    pub bind: SocketAddr,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            api_key: "sim-api-key".to_owned(),
            api_secret: "sim-api-secret".to_owned(),
            webhook_signing_key: "sim-signing-key".to_owned(),
            webhook_url: None,
            manual_review: false,
            manual_review_delay: Duration::from_millis(200),
            default_expiry_time_secs: 3600,
            default_session_length_secs: 600,
            webhook_max_attempts: 5,
            webhook_initial_backoff: Duration::from_millis(50),
            webhook_timeout: Duration::from_secs(10),
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        }
    }
}

impl std::fmt::Debug for SimConfig {
    // Credentials stay out of logs even though they are only test values.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimConfig")
            .field("api_key", &self.api_key)
            .field("api_secret", &"<redacted>")
            .field("webhook_signing_key", &"<redacted>")
            .field("webhook_url", &self.webhook_url)
            .field("manual_review", &self.manual_review)
            .field("manual_review_delay", &self.manual_review_delay)
            .field("default_expiry_time_secs", &self.default_expiry_time_secs)
            .field(
                "default_session_length_secs",
                &self.default_session_length_secs,
            )
            .field("webhook_max_attempts", &self.webhook_max_attempts)
            .field("webhook_initial_backoff", &self.webhook_initial_backoff)
            .field("webhook_timeout", &self.webhook_timeout)
            .field("bind", &self.bind)
            .finish()
    }
}
