//! Tunables of the service and the webhook signing key.

use std::{fmt, time::Duration};

use rand::Rng;
use secrecy::{ExposeSecret, SecretSlice};

use crate::Environment;

/// The back-off between retries of a store write that records a paid token: 100 ms
/// doubling, at most 2 s, no jitter.
pub const STORE_RETRY_BACKOFF: Backoff =
    Backoff::new(Duration::from_millis(100), Duration::from_secs(2));

/// Exponential back-off, the one every retry loop of the service uses: the wait before
/// retry `attempt` (1 = the first) is `base·2^(attempt−1)`, at most `max` (its
/// [ceiling](Backoff::ceiling)), then spread by [`Jitter`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling of the first retry.
    pub base: Duration,
    /// No ceiling exceeds this.
    pub max: Duration,
    /// How a wait is spread below its ceiling.
    pub jitter: Jitter,
}

/// How a [`Backoff`] spreads a wait below its ceiling.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Jitter {
    /// Exactly the ceiling: the same wait every time (a wait stored in a row, a retry
    /// within one request).
    #[default]
    None,
    /// "Equal jitter": uniformly random in `[ceiling/2, ceiling]`, so that callers that
    /// failed together retry apart while each still waits at least half the ceiling.
    Equal,
}

impl Backoff {
    /// Doubling from `base` up to `max`, without jitter.
    pub const fn new(base: Duration, max: Duration) -> Backoff {
        Backoff {
            base,
            max,
            jitter: Jitter::None,
        }
    }

    /// The same back-off with `jitter`.
    pub const fn with_jitter(self, jitter: Jitter) -> Backoff {
        Backoff { jitter, ..self }
    }

    /// The longest wait before retry `attempt`: `base·2^(attempt−1)`, at most `max`
    /// (attempt 0 counts as 1).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        if self.base.is_zero() {
            return Duration::ZERO;
        }
        2u32.checked_pow(attempt.saturating_sub(1))
            .and_then(|factor| self.base.checked_mul(factor))
            .map_or(self.max, |ceiling| ceiling.min(self.max))
    }

    /// The wait before retry `attempt`: the ceiling, spread by the jitter (drawn from the
    /// thread's random generator).
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_with(attempt, &mut rand::rng())
    }

    fn delay_with(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling(attempt);
        match self.jitter {
            Jitter::None => ceiling,
            Jitter::Equal => {
                let floor = ceiling / 2;
                let spread = u64::try_from((ceiling - floor).as_nanos()).unwrap_or(u64::MAX);
                floor.saturating_add(Duration::from_nanos(rng.random_range(0..=spread)))
            }
        }
    }
}

/// Behaviour settings of one environment's [`crate::Sessions`]. The defaults are listed in
/// `docs/resolver.md#settings-and-defaults`.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The environment these settings and the service's ports belong to.
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
    /// The defaults of `docs/resolver.md#settings-and-defaults` for `environment`;
    /// trailing slashes are removed from `redirect_base`.
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
    /// paid token: [`STORE_RETRY_BACKOFF`].
    pub fn store_retry_backoff(attempt: u32) -> Duration {
        STORE_RETRY_BACKOFF.delay(attempt)
    }

    /// The mint back-off: `backoff_base` doubling up to `backoff_max`, without jitter (the
    /// retry time is stored in the row).
    pub fn mint_backoff(&self) -> Backoff {
        Backoff::new(self.backoff_base, self.backoff_max)
    }

    /// Back-off after `failures` consecutive failed mints: base·2^(n−1), capped.
    pub fn backoff(&self, failures: u32) -> Duration {
        self.mint_backoff().delay(failures)
    }
}

/// The webhook signing key: a [`secrecy::SecretSlice`], so `Debug` never shows it and the
/// memory is zeroed when the last copy is dropped.
#[derive(Clone)]
pub struct WebhookKey(SecretSlice<u8>);

impl WebhookKey {
    /// Wraps the raw key bytes.
    pub fn new(key: impl Into<Vec<u8>>) -> Self {
        Self(SecretSlice::from(key.into()))
    }

    /// The raw key bytes; call only to compute a signature.
    pub fn expose(&self) -> &[u8] {
        self.0.expose_secret()
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

    use rand::{SeedableRng, rngs::StdRng};

    #[test]
    fn backoff_doubles_and_caps() {
        let s = Settings::new(Environment::Live, "http://x", WebhookKey::new("k"));
        assert_eq!(s.backoff(1), Duration::from_secs(2));
        assert_eq!(s.backoff(2), Duration::from_secs(4));
        assert_eq!(s.backoff(5), Duration::from_secs(32));
        assert_eq!(s.backoff(40), Duration::from_secs(300));
    }

    #[test]
    fn store_retries_double_from_100_ms_to_2_s() {
        let waits: Vec<u64> = (1..=7)
            .map(|attempt| {
                u64::try_from(Settings::store_retry_backoff(attempt).as_millis()).unwrap_or(0)
            })
            .collect();
        assert_eq!(waits, [100, 200, 400, 800, 1_600, 2_000, 2_000]);
        assert_eq!(
            Settings::store_retry_backoff(u32::MAX),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn ceilings_grow_by_doubling_up_to_the_cap() {
        let backoff = Backoff::new(Duration::from_millis(3), Duration::from_millis(50));
        let ceilings: Vec<Duration> = (0..=7).map(|attempt| backoff.ceiling(attempt)).collect();
        let ms = Duration::from_millis;
        assert_eq!(
            ceilings,
            [ms(3), ms(3), ms(6), ms(12), ms(24), ms(48), ms(50), ms(50)],
            "attempt 0 counts as the first"
        );
        for attempt in [32, 33, 64, u32::MAX] {
            assert_eq!(backoff.ceiling(attempt), ms(50), "no overflow at {attempt}");
        }
        let zero = Backoff::new(Duration::ZERO, Duration::from_secs(1));
        assert_eq!(zero.ceiling(u32::MAX), Duration::ZERO, "no base, no wait");
        let tight = Backoff::new(Duration::from_secs(5), Duration::from_secs(1));
        assert_eq!(tight.ceiling(1), Duration::from_secs(1), "the cap wins");
    }

    #[test]
    fn without_jitter_the_delay_is_the_ceiling() {
        let backoff = Backoff::new(Duration::from_millis(7), Duration::from_secs(1));
        assert_eq!(backoff.jitter, Jitter::None);
        for attempt in 1..12 {
            assert_eq!(backoff.delay(attempt), backoff.ceiling(attempt));
        }
    }

    #[test]
    fn equal_jitter_stays_in_the_upper_half_and_spreads() {
        let backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(2))
            .with_jitter(Jitter::Equal);
        let mut rng = StdRng::seed_from_u64(7);
        for attempt in [1, 2, 3, 4, 5, 30] {
            let ceiling = backoff.ceiling(attempt);
            let delays: Vec<Duration> = (0..500)
                .map(|_| backoff.delay_with(attempt, &mut rng))
                .collect();
            for delay in &delays {
                assert!(
                    ceiling / 2 <= *delay && *delay <= ceiling,
                    "attempt {attempt}: {delay:?} outside [{:?}, {ceiling:?}]",
                    ceiling / 2
                );
            }
            // Spread over the range, not stuck at one end (a fixed seed: deterministic).
            let lowest = delays.iter().min().copied().unwrap_or_default();
            let highest = delays.iter().max().copied().unwrap_or_default();
            assert!(
                lowest < ceiling * 6 / 10,
                "attempt {attempt}: lowest {lowest:?}"
            );
            assert!(
                highest > ceiling * 9 / 10,
                "attempt {attempt}: highest {highest:?}"
            );
        }
        // The thread's generator obeys the same bounds.
        for _ in 0..200 {
            let delay = backoff.delay(3);
            assert!(Duration::from_millis(400) <= delay && delay <= Duration::from_millis(800));
        }
        // Usable in constants, as callers define their policies.
        const ONE_NANO: Backoff = Backoff::new(Duration::from_nanos(1), Duration::from_nanos(1))
            .with_jitter(Jitter::Equal);
        assert!(ONE_NANO.delay(1) <= Duration::from_nanos(1));
    }
}
