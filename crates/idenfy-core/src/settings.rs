//! Tunables of the service and the webhook signing key.

use std::{fmt, time::Duration};

use crate::Environment;

/// Behaviour settings of one environment's [`crate::Sessions`]. Defaults follow PRODUCT.md.
#[derive(Clone, Debug)]
pub struct Settings {
    pub environment: Environment,
    /// Minimum time between two `/api/v2/status` calls for one row (default 15 s).
    pub poll_interval: Duration,
    /// Max persisted recreations per row (default 10).
    pub recreation_cap: u32,
    /// Max token calls ever started for one row, billed or not (default 30): the error
    /// budget that turns endless mint failures into a refundable failure.
    pub max_mint_attempts: u32,
    /// TTL of the Valkey recreate lock (default 30 s).
    pub lock_ttl: Duration,
    /// How long a MongoDB recreation claim (and a creation intent) is held (default 60 s);
    /// longer than a token call can take.
    pub claim_ttl: Duration,
    /// How long after a mint the write that records it (the persist of a recovery, the
    /// intent of a creation) is retried on store errors, within the claim (default 15 s).
    /// A claim must outlast a token call plus this.
    pub persist_retry: Duration,
    /// Back-off after a token call whose outcome is unknown (default 60 s): long enough for
    /// a webhook or a status poll to reveal a token iDenfy may have minted.
    pub unknown_outcome_backoff: Duration,
    /// Unknown token-call outcomes a row may have before it gives up, its parent failed
    /// (default 3): each may have billed one token we never saw.
    pub max_unknown_mint_outcomes: u32,
    /// First back-off after a failed mint (default 2 s); doubles per failure.
    pub backoff_base: Duration,
    /// Longest back-off (default 5 min).
    pub backoff_max: Duration,
    /// `retryAfterMs` of a pending view when nothing better is known (default 500 ms:
    /// a recovery under way usually ends within a token call's few hundred milliseconds).
    pub pending_retry_after: Duration,
    /// Window for reusing an APPROVED row and for listing (default 5 days).
    pub reuse_window: Duration,
    /// Rows listed by `GET /idenfy-sessions` (default 10).
    pub list_limit: u32,
    /// Base of the hosted-UI link (`<base>/api/v2/redirect?authToken=`).
    pub redirect_base: String,
    /// HMAC key of this environment's webhooks.
    pub webhook_key: WebhookKey,
}

impl Settings {
    pub fn new(
        environment: Environment,
        redirect_base: impl Into<String>,
        webhook_key: WebhookKey,
    ) -> Self {
        Self {
            environment,
            poll_interval: Duration::from_secs(15),
            recreation_cap: 10,
            max_mint_attempts: 30,
            lock_ttl: Duration::from_secs(30),
            claim_ttl: Duration::from_secs(60),
            persist_retry: Duration::from_secs(15),
            unknown_outcome_backoff: Duration::from_secs(60),
            max_unknown_mint_outcomes: 3,
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(300),
            pending_retry_after: Duration::from_millis(500),
            reuse_window: Duration::from_secs(5 * 24 * 3600),
            list_limit: 10,
            redirect_base: redirect_base.into().trim_end_matches('/').to_owned(),
            webhook_key,
        }
    }

    /// The wait before retry `attempt` (1 = the first) of a store write that records a
    /// paid token: 100 ms doubling, at most 2 s.
    pub fn store_retry_backoff(attempt: u32) -> Duration {
        Duration::from_millis(100)
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(5))
            .min(Duration::from_secs(2))
    }

    /// Back-off after `failures` consecutive failed mints: base·2^(n−1), capped.
    pub fn backoff(&self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(20);
        self.backoff_base
            .saturating_mul(1u32 << exp)
            .min(self.backoff_max)
    }
}

/// The webhook signing key; `Debug` never shows it.
#[derive(Clone)]
pub struct WebhookKey(Vec<u8>);

impl WebhookKey {
    pub fn new(key: impl Into<Vec<u8>>) -> Self {
        Self(key.into())
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for WebhookKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookKey([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let s = Settings::new(Environment::Live, "http://x", WebhookKey::new("k"));
        assert_eq!(s.backoff(1), Duration::from_secs(2));
        assert_eq!(s.backoff(2), Duration::from_secs(4));
        assert_eq!(s.backoff(5), Duration::from_secs(32));
        assert_eq!(s.backoff(40), Duration::from_secs(300));
    }
}
