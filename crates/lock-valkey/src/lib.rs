//! The idenfy-core recreate-lock port on Valkey via fred: `SET NX PX` to acquire, a
//! compare-and-delete Lua script to release.
//!
//! The lock is an optimisation in front of the MongoDB claim (the real guard), so it
//! is built to fail fast rather than to wait:
//! - [`ValkeyLock::connect`] never blocks start-up on Valkey: it starts a small pool whose
//!   clients connect, and keep reconnecting, in the background (exponential back-off,
//!   unlimited attempts). It waits at most [`ValkeyOptions::connect_wait`] for the first
//!   connection and returns the lock either way.
//! - Every command runs with `fail_fast` (a command issued while disconnected fails at once
//!   instead of queueing for the reconnect), one attempt (a `SET NX` is never resent after
//!   a lost reply, which would misreport our own lock as someone else's), and a timeout
//!   (default 500 ms). Connection failures and timeouts are `LockError::Unavailable`,
//!   with fred's error as the source.
//!
//! Keys: `[<test prefix>][sandbox:]idenfy:recreate-lock:<rowId>`, value a random 128-bit
//! owner token (`Nonce::random()`).
//!
//! TLS: a `rediss://` or `valkeys://` URL connects over TLS (rustls, ring provider), trusting
//! the system's roots (the platform store, or `SSL_CERT_FILE` / `SSL_CERT_DIR`) unless
//! [`ValkeyOptions::tls_root_certs_pem`] names others.

#![warn(missing_docs)]

use std::time::Duration;

use fred::{
    clients::Pool,
    interfaces::{ClientLike, KeysInterface},
    types::{
        Builder, ClusterHash, CustomCommand, Expiration, SetOptions, Value,
        config::{Config, Options, ReconnectPolicy, TlsConfig},
        scripts::Script,
    },
};
use idenfy_core::{Environment, LockError, LockGuard, Nonce, RecreateLock, RowId};
use rustls::pki_types::{CertificateDer, pem::PemObject};

/// The Valkey client this crate is built against, so that a pool passed to
/// [`ValkeyLock::from_pool`] comes from the very same version.
pub use fred;

/// The compare-and-delete release script (also in `lua/release.lua`).
pub const RELEASE_LUA: &str = include_str!("../lua/release.lua");

/// Default per-command timeout (id-server's Valkey client uses 500 ms too).
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_millis(500);
/// Default TCP connect timeout of one connection attempt.
pub const DEFAULT_CONNECTION_TIMEOUT: Duration = Duration::from_secs(1);
/// Default wait for the first connection in [`ValkeyLock::connect`].
pub const DEFAULT_CONNECT_WAIT: Duration = Duration::from_secs(1);
/// Default pool size.
pub const DEFAULT_POOL_SIZE: usize = 2;

/// What can go wrong building the lock (only configuration: connecting is not awaited).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URL or the options were refused by fred.
    #[error("invalid Valkey configuration")]
    Config(#[source] fred::error::Error),
    /// [`ValkeyOptions::tls_root_certs_pem`] holds no usable certificate.
    #[error("invalid TLS root certificates: {0}")]
    TlsRoots(String),
}

/// Client settings; `Default` gives the documented defaults.
#[derive(Clone, Debug)]
pub struct ValkeyOptions {
    /// Clients in the round-robin pool (at least 1).
    pub pool_size: usize,
    /// Upper bound of every lock command.
    pub command_timeout: Duration,
    /// Timeout of one TCP (and TLS) connection attempt.
    pub connection_timeout: Duration,
    /// How long [`ValkeyLock::connect`] waits for the first connection before returning a
    /// lock that keeps connecting in the background. Zero: do not wait.
    pub connect_wait: Duration,
    /// Reconnect back-off: the first delay.
    pub reconnect_min_delay: Duration,
    /// Reconnect back-off: the longest delay.
    pub reconnect_max_delay: Duration,
    /// Certificates (PEM) trusted for a TLS URL (`rediss://`, `valkeys://`) instead of the
    /// system's roots; `None`: the system's. Ignored for a plain `redis://` URL.
    pub tls_root_certs_pem: Option<Vec<u8>>,
}

impl Default for ValkeyOptions {
    fn default() -> Self {
        ValkeyOptions {
            pool_size: DEFAULT_POOL_SIZE,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            connection_timeout: DEFAULT_CONNECTION_TIMEOUT,
            connect_wait: DEFAULT_CONNECT_WAIT,
            reconnect_min_delay: Duration::from_millis(100),
            reconnect_max_delay: Duration::from_secs(5),
            tls_root_certs_pem: None,
        }
    }
}

/// A rustls client configuration trusting exactly the certificates in `pem`.
fn tls_with_roots(pem: &[u8]) -> Result<TlsConfig, Error> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|error| Error::TlsRoots(error.to_string()))?;
        roots
            .add(cert)
            .map_err(|error| Error::TlsRoots(error.to_string()))?;
    }
    if roots.is_empty() {
        return Err(Error::TlsRoots("no certificate in the PEM".to_owned()));
    }
    Ok(rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth()
        .into())
}

/// The recreate lock of one environment. Cheap to clone (the pool is shared).
#[derive(Clone, Debug)]
pub struct ValkeyLock {
    pool: Pool,
    environment: Environment,
    key_prefix: String,
    release: Script,
    command: Options,
}

fn millis(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}

fn unavailable(error: fred::error::Error) -> LockError {
    LockError::Unavailable(Box::new(error))
}

impl ValkeyLock {
    /// Builds the pool for `url` (`redis://`, `rediss://` or `valkey://`) and starts
    /// connecting in the background. Waits at most `options.connect_wait` for the first
    /// connection; when Valkey is down it returns anyway (logging a warning): commands then
    /// fail with `Unavailable` until a reconnect succeeds. Fails only on a bad URL or options.
    pub async fn connect(
        url: &str,
        environment: Environment,
        options: ValkeyOptions,
    ) -> Result<ValkeyLock, Error> {
        let mut config = Config::from_url(url).map_err(Error::Config)?;
        if config.tls.is_some()
            && let Some(pem) = &options.tls_root_certs_pem
        {
            config.tls = Some(tls_with_roots(pem)?);
        }
        // Reconnect in the background even when the very first connection fails.
        config.fail_fast = false;
        let policy = ReconnectPolicy::new_exponential(
            0, // unlimited attempts
            millis(options.reconnect_min_delay).max(1),
            millis(options.reconnect_max_delay).max(1),
            2,
        );
        let pool = Builder::from_config(config)
            .with_connection_config(|connection| {
                connection.connection_timeout = options.connection_timeout;
                connection.internal_command_timeout = options.connection_timeout;
                connection.max_command_attempts = 1;
                connection.reconnect_on_auth_error = false;
                // A connection that stops answering (a paused or half-dead server) is
                // dropped and re-established instead of being waited on forever.
                connection.unresponsive.max_timeout = Some(
                    options
                        .command_timeout
                        .saturating_mul(4)
                        .max(Duration::from_secs(2)),
                );
                connection.unresponsive.interval = Duration::from_millis(500);
            })
            .with_performance_config(|performance| {
                performance.default_command_timeout = options.command_timeout;
            })
            .set_policy(policy)
            .build_pool(options.pool_size.max(1))
            .map_err(Error::Config)?;
        // The returned handle drives the connections; dropping it detaches the task.
        drop(pool.connect());
        if !options.connect_wait.is_zero() {
            match tokio::time::timeout(options.connect_wait, pool.wait_for_connect()).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::warn!(
                    error = %error,
                    "Valkey not reachable yet; the recreate lock is unavailable until it reconnects"
                ),
                Err(_) => tracing::warn!(
                    waited_ms = millis(options.connect_wait),
                    "Valkey not reachable yet; the recreate lock is unavailable until it reconnects"
                ),
            }
        }
        Ok(ValkeyLock::from_pool(
            pool,
            environment,
            options.command_timeout,
        ))
    }

    /// A lock over a pool the caller already has (built and connected with the same `fred`
    /// this crate re-exports). Each lock command is sent once, fails at once while the pool
    /// is disconnected, and gives up after `command_timeout`; reconnection, TLS and pool
    /// size stay as the caller configured them.
    pub fn from_pool(
        pool: Pool,
        environment: Environment,
        command_timeout: Duration,
    ) -> ValkeyLock {
        ValkeyLock {
            pool,
            environment,
            key_prefix: String::new(),
            release: Script::from_lua(RELEASE_LUA),
            command: Options {
                timeout: Some(command_timeout),
                max_attempts: Some(1),
                fail_fast: true,
                ..Options::default()
            },
        }
    }

    /// The same lock with an extra prefix in front of every key (tests use a unique one, so
    /// parallel tests sharing one Valkey never collide).
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> ValkeyLock {
        self.key_prefix = prefix.into();
        self
    }

    /// The same pool, for the other environment (live ↔ sandbox).
    pub fn for_environment(&self, environment: Environment) -> ValkeyLock {
        ValkeyLock {
            environment,
            ..self.clone()
        }
    }

    /// The environment whose key space this lock uses.
    pub fn environment(&self) -> Environment {
        self.environment
    }

    /// The key guarding `row`: `[<test prefix>][sandbox:]idenfy:recreate-lock:<rowId>`.
    pub fn key(&self, row: &RowId) -> String {
        format!(
            "{}{}idenfy:recreate-lock:{}",
            self.key_prefix,
            self.environment.key_prefix(),
            row
        )
    }

    /// Whether the connections use TLS (a `rediss://` or `valkeys://` URL).
    pub fn uses_tls(&self) -> bool {
        self.pool.next().client_config().uses_tls()
    }

    /// Whether at least one pooled client is connected right now.
    pub fn is_connected(&self) -> bool {
        self.pool.clients().iter().any(ClientLike::is_connected)
    }

    /// Readiness: a `PING` round trip within the command timeout.
    pub async fn ping(&self) -> Result<(), LockError> {
        let _: Value = self
            .pool
            .with_options(&self.command)
            .ping(None)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Closes the pool's connections and stops reconnecting (bounded by the command
    /// timeout, so it never hangs on an unreachable server).
    pub async fn shutdown(&self) {
        let limit = self
            .command
            .timeout
            .unwrap_or(DEFAULT_COMMAND_TIMEOUT)
            .saturating_mul(2);
        match tokio::time::timeout(limit, self.pool.quit()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::debug!(error = %error, "closing the Valkey pool"),
            Err(_) => tracing::debug!("closing the Valkey pool timed out"),
        }
    }
}

impl RecreateLock for ValkeyLock {
    async fn acquire(&self, row: &RowId, ttl: Duration) -> Result<Option<LockGuard>, LockError> {
        let owner = Nonce::random();
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1);
        let reply: Option<String> = self
            .pool
            .with_options(&self.command)
            .set(
                self.key(row),
                owner.as_str(),
                Some(Expiration::PX(ttl_ms)),
                Some(SetOptions::NX),
                false,
            )
            .await
            .map_err(unavailable)?;
        Ok(reply.map(|_| LockGuard {
            row: row.clone(),
            owner,
        }))
    }

    async fn release(&self, guard: &LockGuard) -> Result<bool, LockError> {
        let client = self.pool.with_options(&self.command);
        let key = self.key(&guard.row);
        let owner = guard.owner.as_str();
        // Sent as custom commands: fred's `LuaInterface` methods on a `with_options` client
        // go straight to the pool and drop the options (fail-fast and the timeout with
        // them), so a release while disconnected would wait instead of failing at once.
        // The key is the third argument (after the script and the key count).
        let command = |name: &'static str| CustomCommand::new(name, ClusterHash::Offset(2), false);
        let deleted: i64 = match client
            .custom(
                command("EVALSHA"),
                vec![&**self.release.sha1(), "1", key.as_str(), owner],
            )
            .await
        {
            // Not cached on this server yet (first use, restart, SCRIPT FLUSH): EVAL sends
            // the source, which also caches it for the next EVALSHA.
            Err(error) if error.details().starts_with("NOSCRIPT") => client
                .custom(command("EVAL"), vec![RELEASE_LUA, "1", key.as_str(), owner])
                .await
                .map_err(unavailable)?,
            other => other.map_err(unavailable)?,
        };
        Ok(deleted == 1)
    }
}
