//! The command line and environment (PRODUCT.md §8): clap derive with `env`, validated at
//! start-up into a [`ServeConfig`] whose errors name every missing or invalid variable.
//! Secrets are parsed straight into [`Secret`] / [`WebhookKey`], so `Debug` shows none and
//! `--help` never prints their values.

use std::{convert::Infallible, fmt, net::SocketAddr, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};
use idenfy_client::{DEFAULT_BASE_URL, DEFAULT_REQUEST_TIMEOUT, Secret, TokenOptions};
use idenfy_core::WebhookKey;
use store_mongo::WriteModeSetting;

use crate::http::admission::AdmissionLimits;
use crate::listener::ConnectionLimits;

/// Shortest accepted `INTERNAL_SERVICE_TOKEN`.
pub const MIN_TOKEN_LEN: usize = 32;

/// The worst-case claim → mint → persist path a recreation claim must outlast: a token call
/// (the iDenfy client's request timeout) plus the persist retries after it.
pub fn min_claim_ttl_ms(persist_retry_ms: u64) -> u64 {
    let token_timeout_ms = u64::try_from(DEFAULT_REQUEST_TIMEOUT.as_millis()).unwrap_or(u64::MAX);
    token_timeout_ms.saturating_add(persist_retry_ms)
}

/// Longest accepted duration setting (a day): no arithmetic on it can overflow.
pub const MAX_DURATION_MS: u64 = 86_400_000;

/// Shortest accepted `HEADER_READ_TIMEOUT_MS` and `IDLE_TIMEOUT_MS`.
const MIN_CONNECTION_TIMEOUT_MS: u64 = 100;
/// Longest accepted `HEADER_READ_TIMEOUT_MS` (5 minutes).
const MAX_HEADER_READ_TIMEOUT_MS: u64 = 300_000;
/// Longest accepted `IDLE_TIMEOUT_MS` (an hour).
const MAX_IDLE_TIMEOUT_MS: u64 = 3_600_000;
/// Largest accepted `MAX_CONNECTIONS`.
const MAX_CONNECTIONS_LIMIT: u32 = 1_000_000;

#[derive(Debug, Parser)]
#[command(
    name = "idenfy-app",
    version,
    about = "iDenfy verification sessions with expired-session recovery (HTTP service)",
    long_about = "iDenfy verification sessions with expired-session recovery.\n\n\
                  `idenfy-app dev` runs everything in one process (in-memory store, simulated \
                  iDenfy) for a first look; `idenfy-app serve` is production."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Production: MongoDB, Valkey and the real iDenfy API (all configured by environment).
    Serve(Box<ServeArgs>),
    /// A self-contained demo: in-memory store and lock, idenfy-sim in-process. NOT for production.
    #[cfg(feature = "dev")]
    Dev(DevArgs),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

fn secret(raw: &str) -> Result<Secret, Infallible> {
    Ok(Secret::new(raw))
}

/// `idenfy-app serve`. Every option also reads the environment variable of the same name.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// MongoDB connection string (may carry credentials; never logged).
    #[arg(long, env = "MONGODB_URI", value_parser = secret, hide_env_values = true)]
    pub mongodb_uri: Option<Secret>,
    /// Database name; defaults to the database named in MONGODB_URI's path.
    #[arg(long, env = "MONGODB_DATABASE")]
    pub mongodb_database: Option<String>,
    /// How conditional writes reach MongoDB: `atomic` (one server-side operation each, what
    /// MongoDB needs), `serialised` (per-document mutexes, for FerretDB 1.x, whose updates
    /// are not atomic) or `auto` (serialised exactly when the server is FerretDB).
    #[arg(long, env = "MONGODB_WRITE_MODE", default_value = "auto")]
    pub mongodb_write_mode: WriteModeSetting,
    /// Valkey (Redis protocol) URL for the recreate lock, e.g. redis://127.0.0.1:6379.
    #[arg(long, env = "VALKEY_URL", value_parser = secret, hide_env_values = true)]
    pub valkey_url: Option<Secret>,
    /// iDenfy API key (live).
    #[arg(long, env = "IDENFY_API_KEY", value_parser = secret, hide_env_values = true)]
    pub idenfy_api_key: Option<Secret>,
    /// iDenfy API secret (live).
    #[arg(long, env = "IDENFY_API_SECRET", value_parser = secret, hide_env_values = true)]
    pub idenfy_api_secret: Option<Secret>,
    /// HMAC key of live webhooks.
    #[arg(long, env = "IDENFY_WEBHOOK_SIGNING_KEY", value_parser = secret, hide_env_values = true)]
    pub idenfy_webhook_signing_key: Option<Secret>,
    /// iDenfy API key (sandbox; the three sandbox variables go together).
    #[arg(long, env = "IDENFY_SANDBOX_API_KEY", value_parser = secret, hide_env_values = true)]
    pub idenfy_sandbox_api_key: Option<Secret>,
    /// iDenfy API secret (sandbox).
    #[arg(long, env = "IDENFY_SANDBOX_API_SECRET", value_parser = secret, hide_env_values = true)]
    pub idenfy_sandbox_api_secret: Option<Secret>,
    /// HMAC key of sandbox webhooks.
    #[arg(long, env = "IDENFY_SANDBOX_WEBHOOK_SIGNING_KEY", value_parser = secret, hide_env_values = true)]
    pub idenfy_sandbox_webhook_signing_key: Option<Secret>,
    /// iDenfy API host (also the base of the hosted-UI redirect links).
    #[arg(long, env = "IDENFY_BASE_URL", default_value = DEFAULT_BASE_URL)]
    pub idenfy_base_url: String,
    /// Token `expiryTime` in seconds (unset: iDenfy's default, 3600).
    #[arg(long, env = "IDENFY_EXPIRY_TIME")]
    pub idenfy_expiry_time: Option<u32>,
    /// Token `sessionLength` in seconds (unset: iDenfy's default, 600).
    #[arg(long, env = "IDENFY_SESSION_LENGTH")]
    pub idenfy_session_length: Option<u32>,
    /// Hosted-UI theme uuid (unset: the account default).
    #[arg(long, env = "IDENFY_THEME")]
    pub idenfy_theme: Option<String>,
    /// Most recreations (recoveries) of one row before giving up and failing the parent.
    #[arg(long, env = "RECREATION_CAP", default_value_t = 10)]
    pub recreation_cap: u32,
    /// TTL of the Valkey recreate lock, in milliseconds.
    #[arg(long, env = "LOCK_TTL_MS", default_value_t = 30_000)]
    pub lock_ttl_ms: u64,
    /// How long a MongoDB recreation claim is held, in milliseconds: the time after which a
    /// replica that crashed mid-mint is taken over. Must outlast a token call (10 s) plus
    /// PERSIST_RETRY_MS.
    #[arg(long, env = "CLAIM_TTL_MS", default_value_t = 60_000)]
    pub claim_ttl_ms: u64,
    /// How long after a mint the write recording it is retried through store faults, in
    /// milliseconds; past that, the token goes to the journal in DATA_DIR.
    #[arg(long, env = "PERSIST_RETRY_MS", default_value_t = 15_000)]
    pub persist_retry_ms: u64,
    /// How long to wait after a token call whose outcome is unknown (timeout, connection
    /// lost after sending: a token may have been billed) before minting again, in ms.
    #[arg(long, env = "UNKNOWN_MINT_BACKOFF_MS", default_value_t = 60_000)]
    pub unknown_mint_backoff_ms: u64,
    /// Unknown token-call outcomes a row (or creation key) may have before it gives up, its
    /// parent failed: each may have billed one token we never saw.
    #[arg(long, env = "MAX_UNKNOWN_MINT_OUTCOMES", default_value_t = 3)]
    pub max_unknown_mint_outcomes: u32,
    /// Directory of the mint journal (paid tokens the store could not take in time, kept
    /// until it can). Created 0700 if missing.
    #[arg(long, env = "DATA_DIR", default_value = "idenfy-data")]
    pub data_dir: std::path::PathBuf,
    /// Minimum time between two iDenfy status calls for one row, in milliseconds.
    #[arg(long, env = "POLL_INTERVAL_MS", default_value_t = 15_000)]
    pub poll_interval_ms: u64,
    /// MongoDB connections per server (the driver's pool); also sizes admission control.
    #[arg(long, env = "MONGODB_MAX_POOL_SIZE", default_value_t = 10)]
    pub mongodb_max_pool_size: u32,
    /// Status polls in flight per replica before new ones are refused with 503 +
    /// `Retry-After` (default: 16 × MONGODB_MAX_POOL_SIZE).
    #[arg(long, env = "MAX_IN_FLIGHT_POLLS")]
    pub max_in_flight_polls: Option<u32>,
    /// Webhooks and internal creation calls in flight per replica before new ones are
    /// refused (default: 8 × MONGODB_MAX_POOL_SIZE); a budget of their own.
    #[arg(long, env = "MAX_IN_FLIGHT_PRIORITY")]
    pub max_in_flight_priority: Option<u32>,
    /// Address to listen on.
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:8080")]
    pub listen_addr: SocketAddr,
    /// Longest time from the first byte of a request to the end of its head, in
    /// milliseconds; a slower client is disconnected.
    #[arg(long, env = "HEADER_READ_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_read_timeout_ms: u64,
    /// How long a connection may stay open with no request in flight (and no byte of a next
    /// one received), in milliseconds.
    #[arg(long, env = "IDLE_TIMEOUT_MS", default_value_t = 30_000)]
    pub idle_timeout_ms: u64,
    /// Most HTTP connections open at once; lowered at start to the open-file limit minus a
    /// reserve. At the limit, new connections wait in the listen backlog.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: u32,
    /// Bearer token of the `/internal/...` routes (at least 32 characters).
    #[arg(long, env = "INTERNAL_SERVICE_TOKEN", value_parser = secret, hide_env_values = true)]
    pub internal_service_token: Option<Secret>,
}

/// `idenfy-app dev`.
#[cfg(feature = "dev")]
#[derive(Debug, Args)]
pub struct DevArgs {
    /// Address of the app.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Address of the in-process idenfy-sim.
    #[arg(long, default_value = "127.0.0.1:8990")]
    pub sim_listen: SocketAddr,
    /// Poll interval in milliseconds (short, so expiry shows quickly).
    #[arg(long, default_value_t = 2_000)]
    pub poll_interval_ms: u64,
    /// Internal service token (default: generated and printed).
    #[arg(long, value_parser = secret)]
    pub internal_token: Option<Secret>,
}

/// One environment's iDenfy credentials.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub api_key: Secret,
    pub api_secret: Secret,
    pub webhook_key: WebhookKey,
}

/// Behaviour knobs shared by both environments.
#[derive(Clone, Copy, Debug)]
pub struct Tuning {
    pub recreation_cap: u32,
    pub lock_ttl: Duration,
    pub claim_ttl: Duration,
    pub persist_retry: Duration,
    pub unknown_mint_backoff: Duration,
    pub max_unknown_mint_outcomes: u32,
    pub poll_interval: Duration,
}

/// A validated `serve` configuration.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub mongodb_uri: Secret,
    pub mongodb_database: String,
    pub mongodb_write_mode: WriteModeSetting,
    pub mongodb_max_pool_size: u32,
    pub admission: AdmissionLimits,
    pub valkey_url: Secret,
    pub live: Credentials,
    pub sandbox: Option<Credentials>,
    pub idenfy_base_url: String,
    pub token_options: TokenOptions,
    pub tuning: Tuning,
    pub listen_addr: SocketAddr,
    pub connections: ConnectionLimits,
    pub internal_token: Secret,
    pub data_dir: std::path::PathBuf,
}

/// Every problem found, one per line, each naming its variable.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError(pub Vec<String>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration:")?;
        for problem in &self.0 {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

fn present(value: Option<&Secret>) -> Option<&Secret> {
    value.filter(|s| !s.expose().trim().is_empty())
}

/// The database named in a MongoDB URI's path (`mongodb://host/db?opts` → `db`).
pub fn database_from_uri(uri: &str) -> Option<String> {
    let rest = uri
        .strip_prefix("mongodb://")
        .or_else(|| uri.strip_prefix("mongodb+srv://"))?;
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (_, path) = rest.split_once('/')?;
    let name = path.trim_matches('/');
    (!name.is_empty()).then(|| name.to_owned())
}

/// Largest `MONGODB_MAX_POOL_SIZE` accepted.
const MAX_POOL_SIZE: u32 = 1_000;
/// Largest in-flight budget accepted (per class and replica).
const MAX_IN_FLIGHT: u32 = 100_000;

impl ServeArgs {
    /// The admission budgets: derived from the pool unless set.
    fn admission_limits(&self) -> AdmissionLimits {
        let derived = AdmissionLimits::for_pool(self.mongodb_max_pool_size);
        let set = |value: Option<u32>| value.and_then(|v| usize::try_from(v).ok());
        AdmissionLimits {
            polls: set(self.max_in_flight_polls).unwrap_or(derived.polls),
            priority: set(self.max_in_flight_priority).unwrap_or(derived.priority),
        }
    }

    /// Checks everything, reporting all problems at once.
    pub fn validate(&self) -> Result<ServeConfig, ConfigError> {
        let mut problems = Vec::new();
        let mut required = |value: Option<&Secret>, name: &str| -> Option<Secret> {
            let found = present(value).cloned();
            if found.is_none() {
                problems.push(format!("{name} is required"));
            }
            found
        };
        let mongodb_uri = required(self.mongodb_uri.as_ref(), "MONGODB_URI");
        let valkey_url = required(self.valkey_url.as_ref(), "VALKEY_URL");
        let api_key = required(self.idenfy_api_key.as_ref(), "IDENFY_API_KEY");
        let api_secret = required(self.idenfy_api_secret.as_ref(), "IDENFY_API_SECRET");
        let signing_key = required(
            self.idenfy_webhook_signing_key.as_ref(),
            "IDENFY_WEBHOOK_SIGNING_KEY",
        );
        let internal_token = required(
            self.internal_service_token.as_ref(),
            "INTERNAL_SERVICE_TOKEN",
        );

        if let Some(uri) = &mongodb_uri
            && !(uri.expose().starts_with("mongodb://")
                || uri.expose().starts_with("mongodb+srv://"))
        {
            problems.push("MONGODB_URI must start with mongodb:// or mongodb+srv://".to_owned());
        }
        let mongodb_database = self
            .mongodb_database
            .clone()
            .filter(|d| !d.trim().is_empty())
            .or_else(|| {
                mongodb_uri
                    .as_ref()
                    .and_then(|u| database_from_uri(u.expose()))
            });
        if mongodb_database.is_none() && mongodb_uri.is_some() {
            problems
                .push("MONGODB_DATABASE is required when MONGODB_URI names no database".to_owned());
        }
        if let Some(token) = &internal_token
            && token.expose().len() < MIN_TOKEN_LEN
        {
            problems.push(format!(
                "INTERNAL_SERVICE_TOKEN must be at least {MIN_TOKEN_LEN} characters"
            ));
        }

        let sandbox_vars = [
            (
                "IDENFY_SANDBOX_API_KEY",
                present(self.idenfy_sandbox_api_key.as_ref()),
            ),
            (
                "IDENFY_SANDBOX_API_SECRET",
                present(self.idenfy_sandbox_api_secret.as_ref()),
            ),
            (
                "IDENFY_SANDBOX_WEBHOOK_SIGNING_KEY",
                present(self.idenfy_sandbox_webhook_signing_key.as_ref()),
            ),
        ];
        let sandbox = match sandbox_vars {
            [(_, Some(key)), (_, Some(secret)), (_, Some(signing))] => Some(Credentials {
                api_key: key.clone(),
                api_secret: secret.clone(),
                webhook_key: WebhookKey::new(signing.expose().as_bytes()),
            }),
            [(_, None), (_, None), (_, None)] => None,
            partial => {
                for (name, value) in partial {
                    if value.is_none() {
                        problems.push(format!(
                            "{name} is required when any IDENFY_SANDBOX_* variable is set \
                             (set all three or none)"
                        ));
                    }
                }
                None
            }
        };

        let base_url = self.idenfy_base_url.trim_end_matches('/').to_owned();
        if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
            problems.push("IDENFY_BASE_URL must be an http(s) URL".to_owned());
        }
        if self.lock_ttl_ms == 0 {
            problems.push("LOCK_TTL_MS must be greater than 0".to_owned());
        }
        for (name, value) in [
            ("LOCK_TTL_MS", self.lock_ttl_ms),
            ("CLAIM_TTL_MS", self.claim_ttl_ms),
            ("PERSIST_RETRY_MS", self.persist_retry_ms),
            ("UNKNOWN_MINT_BACKOFF_MS", self.unknown_mint_backoff_ms),
        ] {
            if value > MAX_DURATION_MS {
                problems.push(format!("{name} must be at most {MAX_DURATION_MS} (a day)"));
            }
        }
        if self.max_unknown_mint_outcomes == 0 {
            problems.push("MAX_UNKNOWN_MINT_OUTCOMES must be at least 1".to_owned());
        }
        if self.persist_retry_ms == 0 {
            problems.push("PERSIST_RETRY_MS must be greater than 0".to_owned());
        }
        let min_claim_ttl_ms = min_claim_ttl_ms(self.persist_retry_ms);
        if self.claim_ttl_ms < min_claim_ttl_ms {
            problems.push(format!(
                "CLAIM_TTL_MS={} is shorter than the worst-case claim -> mint -> persist path \
                 it must outlast: {min_claim_ttl_ms} ms (a {} ms token call plus \
                 PERSIST_RETRY_MS={})",
                self.claim_ttl_ms,
                DEFAULT_REQUEST_TIMEOUT.as_millis(),
                self.persist_retry_ms
            ));
        }
        if self.lock_ttl_ms > self.claim_ttl_ms {
            problems.push(format!(
                "LOCK_TTL_MS={} must not exceed CLAIM_TTL_MS={}: a replica that dies mid-mint \
                 would block the row's recovery for the lock's TTL",
                self.lock_ttl_ms, self.claim_ttl_ms
            ));
        }
        if self.poll_interval_ms == 0 {
            problems.push("POLL_INTERVAL_MS must be greater than 0".to_owned());
        }
        for (name, value, max) in [
            (
                "HEADER_READ_TIMEOUT_MS",
                self.header_read_timeout_ms,
                MAX_HEADER_READ_TIMEOUT_MS,
            ),
            ("IDLE_TIMEOUT_MS", self.idle_timeout_ms, MAX_IDLE_TIMEOUT_MS),
        ] {
            if !(MIN_CONNECTION_TIMEOUT_MS..=max).contains(&value) {
                problems.push(format!(
                    "{name} must be between {MIN_CONNECTION_TIMEOUT_MS} and {max}"
                ));
            }
        }
        if !(1..=MAX_CONNECTIONS_LIMIT).contains(&self.max_connections) {
            problems.push(format!(
                "MAX_CONNECTIONS must be between 1 and {MAX_CONNECTIONS_LIMIT}"
            ));
        }
        if !(1..=MAX_POOL_SIZE).contains(&self.mongodb_max_pool_size) {
            problems.push(format!(
                "MONGODB_MAX_POOL_SIZE must be between 1 and {MAX_POOL_SIZE}"
            ));
        }
        for (name, value) in [
            ("MAX_IN_FLIGHT_POLLS", self.max_in_flight_polls),
            ("MAX_IN_FLIGHT_PRIORITY", self.max_in_flight_priority),
        ] {
            if value.is_some_and(|v| !(1..=MAX_IN_FLIGHT).contains(&v)) {
                problems.push(format!("{name} must be between 1 and {MAX_IN_FLIGHT}"));
            }
        }
        if self
            .idenfy_theme
            .as_deref()
            .is_some_and(|t| t.trim().is_empty())
        {
            problems.push("IDENFY_THEME must not be blank when set".to_owned());
        }

        match (
            mongodb_uri,
            mongodb_database,
            valkey_url,
            api_key,
            api_secret,
            signing_key,
            internal_token,
        ) {
            (
                Some(mongodb_uri),
                Some(mongodb_database),
                Some(valkey_url),
                Some(api_key),
                Some(api_secret),
                Some(signing_key),
                Some(internal_token),
            ) if problems.is_empty() => Ok(ServeConfig {
                mongodb_uri,
                mongodb_database,
                mongodb_write_mode: self.mongodb_write_mode,
                mongodb_max_pool_size: self.mongodb_max_pool_size,
                admission: self.admission_limits(),
                valkey_url,
                live: Credentials {
                    api_key,
                    api_secret,
                    webhook_key: WebhookKey::new(signing_key.expose().as_bytes()),
                },
                sandbox,
                idenfy_base_url: base_url,
                token_options: TokenOptions {
                    theme: self.idenfy_theme.clone(),
                    expiry_time_secs: self.idenfy_expiry_time,
                    session_length_secs: self.idenfy_session_length,
                    ..TokenOptions::default()
                },
                tuning: Tuning {
                    recreation_cap: self.recreation_cap,
                    lock_ttl: Duration::from_millis(self.lock_ttl_ms),
                    claim_ttl: Duration::from_millis(self.claim_ttl_ms),
                    persist_retry: Duration::from_millis(self.persist_retry_ms),
                    unknown_mint_backoff: Duration::from_millis(self.unknown_mint_backoff_ms),
                    max_unknown_mint_outcomes: self.max_unknown_mint_outcomes,
                    poll_interval: Duration::from_millis(self.poll_interval_ms),
                },
                listen_addr: self.listen_addr,
                connections: ConnectionLimits {
                    header_read_timeout: Duration::from_millis(self.header_read_timeout_ms),
                    idle_timeout: Duration::from_millis(self.idle_timeout_ms),
                    max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
                    ..ConnectionLimits::default()
                },
                internal_token,
                data_dir: self.data_dir.clone(),
            }),
            _ => Err(ConfigError(problems)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> ServeArgs {
        let mut argv = vec!["idenfy-app", "serve"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).map(|cli| cli.command) {
            Ok(Command::Serve(args)) => *args,
            other => panic!("unexpected parse: {other:?}"),
        }
    }

    const FULL: &[&str] = &[
        "--mongodb-uri=mongodb://127.0.0.1:27017/idserver",
        "--valkey-url=redis://127.0.0.1:6379",
        "--idenfy-api-key=key",
        "--idenfy-api-secret=secret",
        "--idenfy-webhook-signing-key=signing",
        "--internal-service-token=0123456789abcdef0123456789abcdef",
    ];

    #[test]
    fn a_full_configuration_validates_and_hides_secrets() {
        let config = parse(FULL).validate().expect("valid");
        assert_eq!(config.mongodb_database, "idserver");
        assert!(config.sandbox.is_none());
        let debug = format!("{config:?}");
        for secret in ["key\"", "secret\"", "signing", "0123456789abcdef", "27017"] {
            assert!(!debug.contains(secret), "{secret} leaked: {debug}");
        }
    }

    #[test]
    fn every_missing_variable_is_named() {
        let ConfigError(problems) = parse(&[]).validate().expect_err("invalid");
        for name in [
            "MONGODB_URI",
            "VALKEY_URL",
            "IDENFY_API_KEY",
            "IDENFY_API_SECRET",
            "IDENFY_WEBHOOK_SIGNING_KEY",
            "INTERNAL_SERVICE_TOKEN",
        ] {
            if std::env::var_os(name).is_some() {
                continue; // set by whoever runs the tests (e.g. MONGODB_URI under xtask)
            }
            assert!(
                problems.iter().any(|p| p.starts_with(name)),
                "{name}: {problems:?}"
            );
        }
    }

    #[test]
    fn a_partial_sandbox_trio_names_the_missing_ones() {
        let mut args = FULL.to_vec();
        args.push("--idenfy-sandbox-api-key=sk");
        let ConfigError(problems) = parse(&args).validate().expect_err("invalid");
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("IDENFY_SANDBOX_API_SECRET"));
        assert!(problems[1].starts_with("IDENFY_SANDBOX_WEBHOOK_SIGNING_KEY"));
    }

    #[test]
    fn short_tokens_and_databaseless_uris_are_refused() {
        let mut args: Vec<&str> = FULL[1..5].to_vec();
        args.push("--mongodb-uri=mongodb://127.0.0.1:27017/?directConnection=true");
        args.push("--internal-service-token=short");
        let ConfigError(problems) = parse(&args).validate().expect_err("invalid");
        assert!(problems.iter().any(|p| p.starts_with("MONGODB_DATABASE")));
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("INTERNAL_SERVICE_TOKEN must be"))
        );
    }

    #[test]
    fn a_claim_ttl_shorter_than_mint_plus_persist_retries_is_refused_naming_both() {
        let mut args = FULL.to_vec();
        args.push("--claim-ttl-ms=24999");
        args.push("--lock-ttl-ms=20000");
        let ConfigError(problems) = parse(&args).validate().expect_err("invalid");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("CLAIM_TTL_MS=24999 is shorter than")
                && problems[0].contains("25000 ms")
                && problems[0].contains("PERSIST_RETRY_MS=15000"),
            "{problems:?}"
        );

        let mut args = FULL.to_vec();
        args.push("--claim-ttl-ms=25000");
        args.push("--lock-ttl-ms=20000");
        let config = parse(&args).validate().expect("valid");
        assert_eq!(config.tuning.claim_ttl, Duration::from_secs(25));
        assert_eq!(config.tuning.persist_retry, Duration::from_secs(15));
        assert_eq!(
            parse(FULL).validate().expect("valid").tuning.claim_ttl,
            Duration::from_secs(60)
        );
    }

    #[test]
    fn a_lock_outliving_the_claim_and_overflowing_durations_are_refused() {
        let mut args = FULL.to_vec();
        args.push("--claim-ttl-ms=30000");
        args.push("--lock-ttl-ms=30001");
        args.push("--persist-retry-ms=18446744073709551615");
        let ConfigError(problems) = parse(&args).validate().expect_err("invalid");
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("LOCK_TTL_MS=30001 must not exceed CLAIM_TTL_MS=30000")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("PERSIST_RETRY_MS must be at most")),
            "{problems:?}"
        );
    }

    #[test]
    fn connection_limits_default_to_the_listener_defaults_and_are_bounded() {
        assert_eq!(
            parse(FULL).validate().expect("valid").connections,
            ConnectionLimits::default()
        );
        let mut args = FULL.to_vec();
        args.extend([
            "--header-read-timeout-ms=99",
            "--idle-timeout-ms=3600001",
            "--max-connections=0",
        ]);
        let ConfigError(problems) = parse(&args).validate().expect_err("invalid");
        for expected in [
            "HEADER_READ_TIMEOUT_MS must be between 100 and 300000",
            "IDLE_TIMEOUT_MS must be between 100 and 3600000",
            "MAX_CONNECTIONS must be between 1 and 1000000",
        ] {
            assert!(problems.iter().any(|p| p == expected), "{problems:?}");
        }
        let mut args = FULL.to_vec();
        args.extend([
            "--header-read-timeout-ms=1000",
            "--idle-timeout-ms=2000",
            "--max-connections=50",
        ]);
        let connections = parse(&args).validate().expect("valid").connections;
        assert_eq!(connections.header_read_timeout, Duration::from_secs(1));
        assert_eq!(connections.idle_timeout, Duration::from_secs(2));
        assert_eq!(connections.max_connections, 50);
    }

    #[test]
    fn database_names_come_from_the_uri_path() {
        assert_eq!(
            database_from_uri("mongodb://h:1/db?x=y").as_deref(),
            Some("db")
        );
        assert_eq!(
            database_from_uri("mongodb+srv://u:p@h/db").as_deref(),
            Some("db")
        );
        assert_eq!(database_from_uri("mongodb://h:1/"), None);
        assert_eq!(database_from_uri("mongodb://h:1"), None);
    }
}
