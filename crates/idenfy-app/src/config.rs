//! The command line and environment (see README.md): clap derive with `env`, validated at
//! start-up into a [`ServeConfig`] whose errors name every missing or invalid variable.
//! Secrets are parsed straight into [`Secret`] / [`WebhookKey`], so `Debug` shows none and
//! `--help` never prints their values.
//!
//! Typed settings (numbers, addresses, modes) are read by clap as [`Setting`]s, which never
//! fail to parse: a value that is not of its type is kept as text, and the one validation
//! pass ([`ServeArgs::validate`]) reports it together with every other problem (missing
//! variables, ranges, URL schemes, combinations), so an operator sees all of them at once,
//! with one exit status ([`CONFIG_EXIT_CODE`]).

use std::{
    convert::Infallible, fmt, net::SocketAddr, ops::RangeInclusive, str::FromStr, time::Duration,
};

use clap::{Args, Parser, Subcommand};
use idenfy_client::{DEFAULT_BASE_URL, DEFAULT_REQUEST_TIMEOUT, Secret, TokenOptions};
use idenfy_core::WebhookKey;
use store_mongo::{WriteModeSetting, mongodb::options::ConnectionString};

use idenfy_http::admission::AdmissionLimits;
use idenfy_http::listener::ConnectionLimits;

/// Exit status of a refused configuration or command line, whatever found the problem (a
/// value that is not of its type, out of range, a missing variable, an unknown flag): 2, the
/// status clap gives a usage error. Failures after the configuration was accepted (MongoDB
/// unreachable, the listen address taken) exit with 1.
pub const CONFIG_EXIT_CODE: u8 = 2;

/// Shortest accepted `INTERNAL_SERVICE_TOKEN`.
pub const MIN_TOKEN_LEN: usize = 32;

/// The worst-case claim → mint → persist path a recreation claim must outlast: a token call
/// (the iDenfy client's request timeout) plus the persist retries after it.
pub fn min_claim_ttl_ms(persist_retry_ms: u64) -> u64 {
    let token_timeout_ms = u64::try_from(DEFAULT_REQUEST_TIMEOUT.as_millis()).unwrap_or(u64::MAX);
    token_timeout_ms.saturating_add(persist_retry_ms)
}

/// Longest accepted duration setting (a day): every duration is added to the wall clock
/// (`chrono`, which panics on overflow) or to `Instant`s, and a day keeps all of that far
/// from any limit.
pub const MAX_DURATION_MS: u64 = 86_400_000;

/// Accepted `IDENFY_EXPIRY_TIME`, in seconds. iDenfy documents 0 to 2,592,000 (30 days); 0
/// (and anything shorter than the shortest `sessionLength`, a minute) would expire a token
/// before a user could open it, so every token would be recreated until the cap: the floor
/// here is 60.
pub const EXPIRY_TIME_SECS: RangeInclusive<u32> = 60..=2_592_000;
/// Accepted `IDENFY_SESSION_LENGTH`, in seconds: iDenfy's documented 60 to 3600.
pub const SESSION_LENGTH_SECS: RangeInclusive<u32> = 60..=3_600;
/// Largest `RECREATION_CAP` and `MAX_UNKNOWN_MINT_OUTCOMES`: a row makes at most 30 token
/// calls (`idenfy_core::Settings::max_mint_attempts`), so a higher cap could never be
/// reached.
pub const MAX_TOKEN_CALLS: u32 = 30;

/// Shortest accepted `HEADER_READ_TIMEOUT_MS` and `IDLE_TIMEOUT_MS`.
const MIN_CONNECTION_TIMEOUT_MS: u64 = 100;
/// Longest accepted `HEADER_READ_TIMEOUT_MS` (5 minutes).
const MAX_HEADER_READ_TIMEOUT_MS: u64 = 300_000;
/// Longest accepted `IDLE_TIMEOUT_MS` (an hour).
const MAX_IDLE_TIMEOUT_MS: u64 = 3_600_000;
/// Largest accepted `MAX_CONNECTIONS`.
const MAX_CONNECTIONS_LIMIT: u32 = 1_000_000;

/// A typed setting as given: its value, or the text that is not of its type. Parsing one
/// never fails, so clap never stops at the first bad value; [`ServeArgs::validate`] (or
/// [`Cli::problems`]) reports it with everything else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Setting<T> {
    /// The parsed value.
    Value(T),
    /// The raw text (only ever of settings that are not secrets).
    Invalid(String),
}

impl<T> Setting<T> {
    /// The value, when it parsed.
    pub fn value(&self) -> Option<&T> {
        match self {
            Setting::Value(value) => Some(value),
            Setting::Invalid(_) => None,
        }
    }
}

/// clap's value parser of every [`Setting`].
fn setting<T: FromStr>(raw: &str) -> Result<Setting<T>, Infallible> {
    Ok(raw
        .parse()
        .map_or_else(|_| Setting::Invalid(raw.to_owned()), Setting::Value))
}

/// A raw value for an error message: quoted, escaped, and cut after 40 characters.
fn shown(raw: &str) -> String {
    const LONGEST: usize = 40;
    match raw.char_indices().nth(LONGEST) {
        Some((end, _)) => format!("{:?}...", &raw[..end]),
        None => format!("{raw:?}"),
    }
}

/// The command line of `idenfy-app`: a command and the settings every command shares.
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
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
    /// Log format: `text` (human-readable lines) or `json` (one JSON object per line).
    #[arg(long, env = "LOG_FORMAT", value_parser = setting::<LogFormat>, default_value = "text", global = true)]
    pub log_format: Setting<LogFormat>,
}

impl Cli {
    /// The log format asked for; text when `LOG_FORMAT` is invalid (then one of
    /// [`Cli::problems`]).
    pub fn log_format(&self) -> LogFormat {
        self.log_format.value().copied().unwrap_or_default()
    }

    /// The problems of the settings every command shares.
    pub fn problems(&self) -> Vec<String> {
        match &self.log_format {
            Setting::Value(_) => Vec::new(),
            Setting::Invalid(raw) => vec![format!(
                "LOG_FORMAT must be text or json, got {}",
                shown(raw)
            )],
        }
    }
}

/// The commands of `idenfy-app`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Production: MongoDB, Valkey and the real iDenfy API (all configured by environment).
    Serve(Box<ServeArgs>),
    /// A self-contained demo: in-memory store and lock, idenfy-sim in-process. NOT for production.
    #[cfg(feature = "dev")]
    Dev(DevArgs),
}

/// The format of the log lines (`LOG_FORMAT`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(value: &str) -> Result<LogFormat, String> {
        if value.eq_ignore_ascii_case("text") {
            Ok(LogFormat::Text)
        } else if value.eq_ignore_ascii_case("json") {
            Ok(LogFormat::Json)
        } else {
            Err(format!(
                "{} is not a log format (text or json)",
                shown(value)
            ))
        }
    }
}

fn secret(raw: &str) -> Result<Secret, Infallible> {
    Ok(Secret::new(raw))
}

/// `idenfy-app serve`. Every option also reads the environment variable of the same name.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// MongoDB connection string, mongodb:// or mongodb+srv:// (may carry credentials;
    /// never logged).
    #[arg(long, env = "MONGODB_URI", value_parser = secret, hide_env_values = true)]
    pub mongodb_uri: Option<Secret>,
    /// Database name; defaults to the database named in MONGODB_URI's path.
    #[arg(long, env = "MONGODB_DATABASE")]
    pub mongodb_database: Option<String>,
    /// How conditional writes reach MongoDB: `atomic` (one server-side operation each, what
    /// MongoDB needs), `serialised` (per-document mutexes, for FerretDB 1.x, whose updates
    /// are not atomic) or `auto` (serialised exactly when the server is FerretDB).
    #[arg(long, env = "MONGODB_WRITE_MODE", value_parser = setting::<WriteModeSetting>, default_value = "auto")]
    pub mongodb_write_mode: Setting<WriteModeSetting>,
    /// Valkey (Redis protocol) URL for the recreate lock: redis:// or valkey://, or rediss://
    /// or valkeys:// for TLS, e.g. redis://127.0.0.1:6379.
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
    /// iDenfy API host, http:// or https:// (also the base of the hosted-UI redirect links).
    #[arg(long, env = "IDENFY_BASE_URL", default_value = DEFAULT_BASE_URL)]
    pub idenfy_base_url: String,
    /// Token `expiryTime` in seconds, 60 to 2592000 (unset: iDenfy's default, 3600).
    #[arg(long, env = "IDENFY_EXPIRY_TIME", value_parser = setting::<u32>)]
    pub idenfy_expiry_time: Option<Setting<u32>>,
    /// Token `sessionLength` in seconds, 60 to 3600 (unset: iDenfy's default, 600).
    #[arg(long, env = "IDENFY_SESSION_LENGTH", value_parser = setting::<u32>)]
    pub idenfy_session_length: Option<Setting<u32>>,
    /// Hosted-UI theme uuid (unset: the account default).
    #[arg(long, env = "IDENFY_THEME")]
    pub idenfy_theme: Option<String>,
    /// Most recreations (recoveries) of one row before giving up and failing the parent
    /// (1 to 30).
    #[arg(long, env = "RECREATION_CAP", value_parser = setting::<u32>, default_value = "10")]
    pub recreation_cap: Setting<u32>,
    /// TTL of the Valkey recreate lock, in milliseconds (at most CLAIM_TTL_MS).
    #[arg(long, env = "LOCK_TTL_MS", value_parser = setting::<u64>, default_value = "30000")]
    pub lock_ttl_ms: Setting<u64>,
    /// How long a MongoDB recreation claim is held, in milliseconds: the time after which a
    /// replica that crashed mid-mint is taken over. Must outlast a token call (10 s) plus
    /// PERSIST_RETRY_MS.
    #[arg(long, env = "CLAIM_TTL_MS", value_parser = setting::<u64>, default_value = "60000")]
    pub claim_ttl_ms: Setting<u64>,
    /// How long after a mint the write recording it is retried through store faults, in
    /// milliseconds; past that, the token goes to the journal in DATA_DIR.
    #[arg(long, env = "PERSIST_RETRY_MS", value_parser = setting::<u64>, default_value = "15000")]
    pub persist_retry_ms: Setting<u64>,
    /// How long to wait after a token call whose outcome is unknown (timeout, connection
    /// lost after sending: a token may have been billed) before minting again, in ms.
    #[arg(long, env = "UNKNOWN_MINT_BACKOFF_MS", value_parser = setting::<u64>, default_value = "60000")]
    pub unknown_mint_backoff_ms: Setting<u64>,
    /// Unknown token-call outcomes a row (or creation key) may have before it gives up, its
    /// parent failed: each may have billed one token we never saw (1 to 30).
    #[arg(long, env = "MAX_UNKNOWN_MINT_OUTCOMES", value_parser = setting::<u32>, default_value = "3")]
    pub max_unknown_mint_outcomes: Setting<u32>,
    /// Directory of the mint journal (paid tokens the store could not take in time, kept
    /// until it can). Created 0700 if missing.
    #[arg(long, env = "DATA_DIR", default_value = "idenfy-data")]
    pub data_dir: std::path::PathBuf,
    /// Minimum time between two iDenfy status calls for one row, in milliseconds.
    #[arg(long, env = "POLL_INTERVAL_MS", value_parser = setting::<u64>, default_value = "15000")]
    pub poll_interval_ms: Setting<u64>,
    /// MongoDB connections per server (the driver's pool); also sizes admission control.
    #[arg(long, env = "MONGODB_MAX_POOL_SIZE", value_parser = setting::<u32>, default_value = "10")]
    pub mongodb_max_pool_size: Setting<u32>,
    /// Status polls in flight per replica before new ones are refused with 503 +
    /// `Retry-After` (default: 16 × MONGODB_MAX_POOL_SIZE).
    #[arg(long, env = "MAX_IN_FLIGHT_POLLS", value_parser = setting::<u32>)]
    pub max_in_flight_polls: Option<Setting<u32>>,
    /// Webhooks and internal creation calls in flight per replica before new ones are
    /// refused (default: 8 × MONGODB_MAX_POOL_SIZE); a budget of their own.
    #[arg(long, env = "MAX_IN_FLIGHT_PRIORITY", value_parser = setting::<u32>)]
    pub max_in_flight_priority: Option<Setting<u32>>,
    /// Address to listen on.
    #[arg(long, env = "LISTEN_ADDR", value_parser = setting::<SocketAddr>, default_value = "127.0.0.1:8080")]
    pub listen_addr: Setting<SocketAddr>,
    /// Longest time from the first byte of a request to the end of its head, in
    /// milliseconds; a slower client is disconnected.
    #[arg(long, env = "HEADER_READ_TIMEOUT_MS", value_parser = setting::<u64>, default_value = "10000")]
    pub header_read_timeout_ms: Setting<u64>,
    /// How long a connection may stay open with no request in flight (and no byte of a next
    /// one received), in milliseconds.
    #[arg(long, env = "IDLE_TIMEOUT_MS", value_parser = setting::<u64>, default_value = "30000")]
    pub idle_timeout_ms: Setting<u64>,
    /// Most HTTP connections open at once; lowered at start to the open-file limit minus a
    /// reserve. At the limit, new connections wait in the listen backlog.
    #[arg(long, env = "MAX_CONNECTIONS", value_parser = setting::<u32>, default_value = "10000")]
    pub max_connections: Setting<u32>,
    /// Bearer token of the `/internal/...` routes (at least 32 characters).
    #[arg(long, env = "INTERNAL_SERVICE_TOKEN", value_parser = secret, hide_env_values = true)]
    pub internal_service_token: Option<Secret>,
    /// Browser origins allowed to call the user routes cross-origin (CORS), comma-separated
    /// exact origins like `https://app.example.com`. Unset: no CORS headers at all. `*` is
    /// refused: list the origins.
    #[arg(long, env = "CORS_ALLOWED_ORIGINS")]
    pub cors_allowed_origins: Option<String>,
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
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(1..=MAX_DURATION_MS))]
    pub poll_interval_ms: u64,
    /// Internal service token (default: generated and printed).
    #[arg(long, value_parser = secret)]
    pub internal_token: Option<Secret>,
}

/// One environment's iDenfy credentials.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// The API key (`IDENFY_API_KEY` or `IDENFY_SANDBOX_API_KEY`).
    pub api_key: Secret,
    /// The API secret (`IDENFY_API_SECRET` or `IDENFY_SANDBOX_API_SECRET`).
    pub api_secret: Secret,
    /// The HMAC key of the environment's webhooks (`IDENFY_WEBHOOK_SIGNING_KEY` or
    /// `IDENFY_SANDBOX_WEBHOOK_SIGNING_KEY`).
    pub webhook_key: WebhookKey,
}

/// Behaviour knobs shared by both environments.
#[derive(Clone, Copy, Debug)]
pub struct Tuning {
    /// Most recreations of one row before its parent is failed (`RECREATION_CAP`).
    pub recreation_cap: u32,
    /// TTL of the Valkey recreate lock (`LOCK_TTL_MS`); validated to be at most `claim_ttl`.
    pub lock_ttl: Duration,
    /// How long a MongoDB recreation claim is held (`CLAIM_TTL_MS`); validated to be at
    /// least [`min_claim_ttl_ms`] of `persist_retry`.
    pub claim_ttl: Duration,
    /// How long after a mint the write recording it is retried through store faults
    /// (`PERSIST_RETRY_MS`).
    pub persist_retry: Duration,
    /// The wait after a token call whose outcome is unknown before minting again
    /// (`UNKNOWN_MINT_BACKOFF_MS`).
    pub unknown_mint_backoff: Duration,
    /// Unknown token-call outcomes a row (or creation key) may have before it gives up
    /// (`MAX_UNKNOWN_MINT_OUTCOMES`).
    pub max_unknown_mint_outcomes: u32,
    /// Minimum time between two iDenfy status calls for one row (`POLL_INTERVAL_MS`).
    pub poll_interval: Duration,
}

/// A validated `serve` configuration.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// `MONGODB_URI`: a mongodb:// or mongodb+srv:// connection string the driver accepts.
    pub mongodb_uri: Secret,
    /// `MONGODB_DATABASE`, or else the database named in `mongodb_uri`.
    pub mongodb_database: String,
    /// How conditional writes reach MongoDB (`MONGODB_WRITE_MODE`).
    pub mongodb_write_mode: WriteModeSetting,
    /// MongoDB connections per server (`MONGODB_MAX_POOL_SIZE`).
    pub mongodb_max_pool_size: u32,
    /// The in-flight budgets: `MAX_IN_FLIGHT_POLLS` and `MAX_IN_FLIGHT_PRIORITY`, each
    /// [`AdmissionLimits::for_pool`] of `mongodb_max_pool_size` when unset.
    pub admission: AdmissionLimits,
    /// `VALKEY_URL`: a redis://, rediss://, valkey:// or valkeys:// URL with a host.
    pub valkey_url: Secret,
    /// The live environment's credentials.
    pub live: Credentials,
    /// The sandbox environment's credentials; `None` when no `IDENFY_SANDBOX_*` variable
    /// is set.
    pub sandbox: Option<Credentials>,
    /// `IDENFY_BASE_URL` without a trailing `/`: the iDenfy API host and the base of the
    /// hosted-UI redirect links.
    pub idenfy_base_url: String,
    /// The options of every token call (`IDENFY_THEME`, `IDENFY_EXPIRY_TIME`,
    /// `IDENFY_SESSION_LENGTH`; the others at their defaults).
    pub token_options: TokenOptions,
    /// The behaviour knobs of both environments.
    pub tuning: Tuning,
    /// The address to listen on (`LISTEN_ADDR`).
    pub listen_addr: SocketAddr,
    /// `HEADER_READ_TIMEOUT_MS`, `IDLE_TIMEOUT_MS` and `MAX_CONNECTIONS`; the drain timeout
    /// at its default.
    pub connections: ConnectionLimits,
    /// `INTERNAL_SERVICE_TOKEN`, at least [`MIN_TOKEN_LEN`] characters: the bearer token of
    /// the internal routes.
    pub internal_token: Secret,
    /// `DATA_DIR`: the directory of the mint journal.
    pub data_dir: std::path::PathBuf,
    /// Exact origins (`scheme://host[:port]`, lower case, no default port) allowed to call
    /// the user routes cross-origin; empty: no CORS.
    pub cors_allowed_origins: Vec<String>,
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

/// A URL's scheme and whether a host follows it. Looks at nothing else, and
/// its callers print neither: a connection string may carry credentials.
fn scheme_and_host(url: &str) -> Option<(&str, bool)> {
    let (scheme, rest) = url.trim().split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    Some((scheme, !host.is_empty() && !host.starts_with(':')))
}

/// Checks that `url` (the value of `name`, which may hold credentials and is never printed)
/// has one of `schemes` and a host; whether it has.
fn check_url(problems: &mut Vec<String>, name: &str, url: &str, schemes: &[&str]) -> bool {
    let expected = schemes
        .iter()
        .map(|scheme| format!("{scheme}://"))
        .collect::<Vec<_>>()
        .join(", ");
    match scheme_and_host(url) {
        Some((scheme, has_host)) if schemes.contains(&scheme) => {
            if !has_host {
                problems.push(format!("{name} names no host"));
            }
            has_host
        }
        _ => {
            problems.push(format!(
                "{name} must start with one of {expected} (the value is not shown: it may \
                 hold credentials)"
            ));
            false
        }
    }
}

/// One entry of `CORS_ALLOWED_ORIGINS` as browsers send it in `Origin`: `http(s)://host`
/// with an optional port, scheme and host in lower case, no default port.
fn cors_origin(entry: &str) -> Result<String, String> {
    const EXPECTED: &str = "an origin like https://app.example.com (scheme, host and optional \
                            port; no path, not even a trailing /)";
    if entry == "*" {
        return Err(
            "`*` is not accepted: list the exact origins allowed to call the user routes"
                .to_owned(),
        );
    }
    let (scheme, rest) = entry
        .split_once("://")
        .ok_or_else(|| format!("{} is not {EXPECTED}", shown(entry)))?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => "443",
        "http" => "80",
        _ => return Err(format!("{} is not http:// or https://", shown(entry))),
    };
    // `host[:port]`, or `[ipv6][:port]`.
    let (host, after) = match rest.find(']') {
        Some(end) if rest.starts_with('[') => rest.split_at(end + 1),
        _ => rest
            .split_once(':')
            .map_or((rest, ""), |(host, _)| (host, &rest[host.len()..])),
    };
    let port = match after.strip_prefix(':') {
        Some(port) => Some(port),
        None if after.is_empty() => None,
        None => return Err(format!("{} is not {EXPECTED}", shown(entry))),
    };
    let host_ok = if let Some(ip6) = host.strip_prefix('[') {
        ip6.strip_suffix(']')
            .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok())
    } else {
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    };
    let port_ok = port.is_none_or(|p| {
        p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok_and(|n| n > 0)
    });
    if !host_ok || !port_ok {
        return Err(format!("{} is not {EXPECTED}", shown(entry)));
    }
    let host = host.to_ascii_lowercase();
    Ok(match port {
        Some(port) if port != default_port => format!("{scheme}://{host}:{port}"),
        _ => format!("{scheme}://{host}"),
    })
}

/// Largest `MONGODB_MAX_POOL_SIZE` accepted.
const MAX_POOL_SIZE: u32 = 1_000;
/// Largest in-flight budget accepted (per class and replica).
const MAX_IN_FLIGHT: u32 = 100_000;

/// The validation pass's list of problems.
struct Problems(Vec<String>);

impl Problems {
    /// A whole number within `range` (`unit` names what it counts), or a problem naming
    /// `name`, the range and what was given.
    fn number<T>(
        &mut self,
        name: &str,
        setting: &Setting<T>,
        range: RangeInclusive<T>,
        unit: &str,
    ) -> Option<T>
    where
        T: Copy + PartialOrd + fmt::Display,
    {
        let given = match setting {
            Setting::Value(value) if range.contains(value) => return Some(*value),
            Setting::Value(value) => value.to_string(),
            Setting::Invalid(raw) => shown(raw),
        };
        self.0.push(format!(
            "{name} must be a whole number between {} and {} ({unit}), got {given}",
            range.start(),
            range.end()
        ));
        None
    }

    /// A duration in milliseconds within `range`.
    fn millis(
        &mut self,
        name: &str,
        setting: &Setting<u64>,
        range: RangeInclusive<u64>,
    ) -> Option<u64> {
        self.number(name, setting, range, "milliseconds")
    }

    /// An optional number: `Some(None)` when unset, `Some(Some(n))` when valid, `None`
    /// (and a problem) when invalid.
    fn optional<T>(
        &mut self,
        name: &str,
        setting: Option<&Setting<T>>,
        range: RangeInclusive<T>,
        unit: &str,
    ) -> Option<Option<T>>
    where
        T: Copy + PartialOrd + fmt::Display,
    {
        match setting {
            None => Some(None),
            Some(setting) => self.number(name, setting, range, unit).map(Some),
        }
    }
}

impl ServeArgs {
    /// Checks everything, reporting all problems at once: values that are not of their
    /// type, ranges, missing variables, URL schemes and combinations.
    pub fn validate(&self) -> Result<ServeConfig, ConfigError> {
        let mut problems = Problems(Vec::new());
        let mut required = |value: Option<&Secret>, name: &str| -> Option<Secret> {
            let found = present(value).cloned();
            if found.is_none() {
                problems.0.push(format!("{name} is required"));
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

        // The driver's parser, which the store will use, read once: it vets the string and
        // names the database. Its message is not shown, as it may quote the string (and the
        // credentials in it).
        let parsed_uri = mongodb_uri
            .as_ref()
            .filter(|uri| {
                check_url(
                    &mut problems.0,
                    "MONGODB_URI",
                    uri.expose(),
                    &["mongodb", "mongodb+srv"],
                )
            })
            .and_then(|uri| {
                let parsed = ConnectionString::parse(uri.expose()).ok();
                if parsed.is_none() {
                    problems.0.push(
                        "MONGODB_URI is not a connection string the MongoDB driver accepts \
                         (check the host list, port numbers and options)"
                            .to_owned(),
                    );
                }
                parsed
            });
        let mongodb_uri_valid = parsed_uri.is_some();
        let mongodb_database = self
            .mongodb_database
            .clone()
            .filter(|d| !d.trim().is_empty())
            .or_else(|| parsed_uri.and_then(|uri| uri.default_database));
        if mongodb_database.is_none() && mongodb_uri_valid {
            problems
                .0
                .push("MONGODB_DATABASE is required when MONGODB_URI names no database".to_owned());
        }
        let mongodb_write_mode = match &self.mongodb_write_mode {
            Setting::Value(mode) => Some(*mode),
            Setting::Invalid(raw) => {
                problems.0.push(format!(
                    "MONGODB_WRITE_MODE must be auto, atomic or serialised, got {}",
                    shown(raw)
                ));
                None
            }
        };
        if let Some(url) = &valkey_url {
            check_url(
                &mut problems.0,
                "VALKEY_URL",
                url.expose(),
                &["redis", "rediss", "valkey", "valkeys"],
            );
        }
        if let Some(token) = &internal_token
            && token.expose().len() < MIN_TOKEN_LEN
        {
            problems.0.push(format!(
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
                        problems.0.push(format!(
                            "{name} is required when any IDENFY_SANDBOX_* variable is set \
                             (set all three or none)"
                        ));
                    }
                }
                None
            }
        };

        let base_url = self.idenfy_base_url.trim().trim_end_matches('/').to_owned();
        check_url(
            &mut problems.0,
            "IDENFY_BASE_URL",
            self.idenfy_base_url.trim(),
            &["https", "http"],
        );
        let expiry_time = problems.optional(
            "IDENFY_EXPIRY_TIME",
            self.idenfy_expiry_time.as_ref(),
            EXPIRY_TIME_SECS,
            "seconds",
        );
        let session_length = problems.optional(
            "IDENFY_SESSION_LENGTH",
            self.idenfy_session_length.as_ref(),
            SESSION_LENGTH_SECS,
            "seconds",
        );
        let recreation_cap = problems.number(
            "RECREATION_CAP",
            &self.recreation_cap,
            1..=MAX_TOKEN_CALLS,
            "recreations",
        );
        let lock_ttl_ms = problems.millis("LOCK_TTL_MS", &self.lock_ttl_ms, 1..=MAX_DURATION_MS);
        let claim_ttl_ms = problems.millis("CLAIM_TTL_MS", &self.claim_ttl_ms, 1..=MAX_DURATION_MS);
        let persist_retry_ms = problems.millis(
            "PERSIST_RETRY_MS",
            &self.persist_retry_ms,
            1..=MAX_DURATION_MS,
        );
        let unknown_mint_backoff_ms = problems.millis(
            "UNKNOWN_MINT_BACKOFF_MS",
            &self.unknown_mint_backoff_ms,
            0..=MAX_DURATION_MS,
        );
        let max_unknown_mint_outcomes = problems.number(
            "MAX_UNKNOWN_MINT_OUTCOMES",
            &self.max_unknown_mint_outcomes,
            1..=MAX_TOKEN_CALLS,
            "token calls",
        );
        if let (Some(claim_ttl_ms), Some(persist_retry_ms)) = (claim_ttl_ms, persist_retry_ms) {
            let min_claim_ttl_ms = min_claim_ttl_ms(persist_retry_ms);
            if claim_ttl_ms < min_claim_ttl_ms {
                problems.0.push(format!(
                    "CLAIM_TTL_MS={claim_ttl_ms} is shorter than the worst-case claim -> mint \
                     -> persist path it must outlast: {min_claim_ttl_ms} ms (a {} ms token \
                     call plus PERSIST_RETRY_MS={persist_retry_ms})",
                    DEFAULT_REQUEST_TIMEOUT.as_millis(),
                ));
            }
        }
        if let (Some(lock_ttl_ms), Some(claim_ttl_ms)) = (lock_ttl_ms, claim_ttl_ms)
            && lock_ttl_ms > claim_ttl_ms
        {
            problems.0.push(format!(
                "LOCK_TTL_MS={lock_ttl_ms} must not exceed CLAIM_TTL_MS={claim_ttl_ms}: a \
                 replica that dies mid-mint would block the row's recovery for the lock's TTL"
            ));
        }
        let poll_interval_ms = problems.millis(
            "POLL_INTERVAL_MS",
            &self.poll_interval_ms,
            1..=MAX_DURATION_MS,
        );
        let header_read_timeout_ms = problems.millis(
            "HEADER_READ_TIMEOUT_MS",
            &self.header_read_timeout_ms,
            MIN_CONNECTION_TIMEOUT_MS..=MAX_HEADER_READ_TIMEOUT_MS,
        );
        let idle_timeout_ms = problems.millis(
            "IDLE_TIMEOUT_MS",
            &self.idle_timeout_ms,
            MIN_CONNECTION_TIMEOUT_MS..=MAX_IDLE_TIMEOUT_MS,
        );
        let max_connections = problems.number(
            "MAX_CONNECTIONS",
            &self.max_connections,
            1..=MAX_CONNECTIONS_LIMIT,
            "connections",
        );
        let pool_size = problems.number(
            "MONGODB_MAX_POOL_SIZE",
            &self.mongodb_max_pool_size,
            1..=MAX_POOL_SIZE,
            "connections",
        );
        let max_in_flight_polls = problems.optional(
            "MAX_IN_FLIGHT_POLLS",
            self.max_in_flight_polls.as_ref(),
            1..=MAX_IN_FLIGHT,
            "requests",
        );
        let max_in_flight_priority = problems.optional(
            "MAX_IN_FLIGHT_PRIORITY",
            self.max_in_flight_priority.as_ref(),
            1..=MAX_IN_FLIGHT,
            "requests",
        );
        let listen_addr = match &self.listen_addr {
            Setting::Value(address) => Some(*address),
            Setting::Invalid(raw) => {
                problems.0.push(format!(
                    "LISTEN_ADDR must be an IP address and port like 127.0.0.1:8080, got {}",
                    shown(raw)
                ));
                None
            }
        };
        if self
            .idenfy_theme
            .as_deref()
            .is_some_and(|t| t.trim().is_empty())
        {
            problems
                .0
                .push("IDENFY_THEME must not be blank when set".to_owned());
        }
        let mut cors_allowed_origins = Vec::new();
        for entry in self
            .cors_allowed_origins
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
        {
            match cors_origin(entry) {
                Ok(origin) if cors_allowed_origins.contains(&origin) => {}
                Ok(origin) => cors_allowed_origins.push(origin),
                Err(problem) => problems.0.push(format!("CORS_ALLOWED_ORIGINS: {problem}")),
            }
        }

        let Problems(problems) = problems;
        match (
            (mongodb_uri, mongodb_database, mongodb_write_mode, pool_size),
            (valkey_url, api_key, api_secret, signing_key, internal_token),
            (
                expiry_time,
                session_length,
                recreation_cap,
                max_unknown_mint_outcomes,
            ),
            (
                lock_ttl_ms,
                claim_ttl_ms,
                persist_retry_ms,
                unknown_mint_backoff_ms,
                poll_interval_ms,
            ),
            (
                listen_addr,
                header_read_timeout_ms,
                idle_timeout_ms,
                max_connections,
            ),
            (max_in_flight_polls, max_in_flight_priority),
        ) {
            (
                (
                    Some(mongodb_uri),
                    Some(mongodb_database),
                    Some(mongodb_write_mode),
                    Some(pool_size),
                ),
                (
                    Some(valkey_url),
                    Some(api_key),
                    Some(api_secret),
                    Some(signing_key),
                    Some(internal_token),
                ),
                (
                    Some(expiry_time_secs),
                    Some(session_length_secs),
                    Some(recreation_cap),
                    Some(max_unknown_mint_outcomes),
                ),
                (
                    Some(lock_ttl_ms),
                    Some(claim_ttl_ms),
                    Some(persist_retry_ms),
                    Some(unknown_mint_backoff_ms),
                    Some(poll_interval_ms),
                ),
                (
                    Some(listen_addr),
                    Some(header_read_timeout_ms),
                    Some(idle_timeout_ms),
                    Some(max_connections),
                ),
                (Some(max_in_flight_polls), Some(max_in_flight_priority)),
            ) if problems.is_empty() => {
                let derived = AdmissionLimits::for_pool(pool_size);
                let budget = |value: Option<u32>, derived: usize| {
                    value
                        .and_then(|v| usize::try_from(v).ok())
                        .unwrap_or(derived)
                };
                Ok(ServeConfig {
                    mongodb_uri,
                    mongodb_database,
                    mongodb_write_mode,
                    mongodb_max_pool_size: pool_size,
                    admission: AdmissionLimits {
                        polls: budget(max_in_flight_polls, derived.polls),
                        priority: budget(max_in_flight_priority, derived.priority),
                    },
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
                        expiry_time_secs,
                        session_length_secs,
                        ..TokenOptions::default()
                    },
                    tuning: Tuning {
                        recreation_cap,
                        lock_ttl: Duration::from_millis(lock_ttl_ms),
                        claim_ttl: Duration::from_millis(claim_ttl_ms),
                        persist_retry: Duration::from_millis(persist_retry_ms),
                        unknown_mint_backoff: Duration::from_millis(unknown_mint_backoff_ms),
                        max_unknown_mint_outcomes,
                        poll_interval: Duration::from_millis(poll_interval_ms),
                    },
                    listen_addr,
                    connections: ConnectionLimits {
                        header_read_timeout: Duration::from_millis(header_read_timeout_ms),
                        idle_timeout: Duration::from_millis(idle_timeout_ms),
                        max_connections: usize::try_from(max_connections).unwrap_or(usize::MAX),
                        ..ConnectionLimits::default()
                    },
                    internal_token,
                    data_dir: self.data_dir.clone(),
                    cors_allowed_origins,
                })
            }
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
                .any(|p| p
                    .starts_with("PERSIST_RETRY_MS must be a whole number between 1 and 86400000")),
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
            "HEADER_READ_TIMEOUT_MS must be a whole number between 100 and 300000 \
             (milliseconds), got 99",
            "IDLE_TIMEOUT_MS must be a whole number between 100 and 3600000 (milliseconds), \
             got 3600001",
            "MAX_CONNECTIONS must be a whole number between 1 and 1000000 (connections), got 0",
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

    /// The database the driver's parser reads from a URI, as `validate` takes it.
    fn database_from_uri(uri: &str) -> Option<String> {
        ConnectionString::parse(uri).ok()?.default_database
    }

    #[test]
    fn database_names_come_from_the_uri_path() {
        assert_eq!(
            database_from_uri("mongodb://h:1/db?appName=x").as_deref(),
            Some("db")
        );
        assert_eq!(
            database_from_uri("mongodb://h:1/db?noSuchOption=y"),
            None,
            "the driver refuses options it does not know"
        );
        assert_eq!(
            database_from_uri("mongodb+srv://u:p@h/db").as_deref(),
            Some("db")
        );
        assert_eq!(database_from_uri("mongodb://h:1/"), None);
        assert_eq!(database_from_uri("mongodb://h:1"), None);
        assert_eq!(
            database_from_uri("mongodb://u:p@h1:1,h2:2/db?replicaSet=rs").as_deref(),
            Some("db"),
            "after a host list and credentials"
        );
        assert_eq!(database_from_uri("mongodb://h:99999/db"), None, "bad port");
    }

    #[test]
    fn type_errors_and_range_errors_are_listed_together() {
        let mut args = FULL.to_vec();
        args.extend([
            "--recreation-cap=-1",
            "--poll-interval-ms=abc",
            "--listen-addr=localhost",
            "--mongodb-write-mode=fast",
            "--idenfy-expiry-time=59",
            "--idenfy-session-length=3601",
            "--max-unknown-mint-outcomes=31",
            "--unknown-mint-backoff-ms=86400001",
            "--max-in-flight-polls=1e3",
        ]);
        let ConfigError(problems) = parse(&args).validate().expect_err("invalid");
        for expected in [
            "RECREATION_CAP must be a whole number between 1 and 30 (recreations), got \"-1\"",
            "POLL_INTERVAL_MS must be a whole number between 1 and 86400000 (milliseconds), \
             got \"abc\"",
            "LISTEN_ADDR must be an IP address and port like 127.0.0.1:8080, got \"localhost\"",
            "MONGODB_WRITE_MODE must be auto, atomic or serialised, got \"fast\"",
            "IDENFY_EXPIRY_TIME must be a whole number between 60 and 2592000 (seconds), got 59",
            "IDENFY_SESSION_LENGTH must be a whole number between 60 and 3600 (seconds), got \
             3601",
            "MAX_UNKNOWN_MINT_OUTCOMES must be a whole number between 1 and 30 (token calls), \
             got 31",
            "UNKNOWN_MINT_BACKOFF_MS must be a whole number between 0 and 86400000 \
             (milliseconds), got 86400001",
            "MAX_IN_FLIGHT_POLLS must be a whole number between 1 and 100000 (requests), got \
             \"1e3\"",
        ] {
            assert!(
                problems.iter().any(|p| p == expected),
                "{expected}: {problems:?}"
            );
        }
        assert_eq!(problems.len(), 9, "{problems:?}");
    }

    #[test]
    fn bounds_are_inclusive_and_reach_the_token_options() {
        let mut args = FULL.to_vec();
        args.extend([
            "--idenfy-expiry-time=2592000",
            "--idenfy-session-length=60",
            "--recreation-cap=30",
            "--poll-interval-ms=86400000",
            "--unknown-mint-backoff-ms=0",
        ]);
        let config = parse(&args).validate().expect("valid");
        assert_eq!(config.token_options.expiry_time_secs, Some(2_592_000));
        assert_eq!(config.token_options.session_length_secs, Some(60));
        assert_eq!(config.tuning.recreation_cap, 30);
        assert_eq!(config.tuning.poll_interval, Duration::from_secs(86_400));
        assert_eq!(config.tuning.unknown_mint_backoff, Duration::ZERO);
        let defaults = parse(FULL).validate().expect("valid");
        assert_eq!(defaults.token_options.expiry_time_secs, None);
        assert_eq!(defaults.tuning.recreation_cap, 10);
    }

    #[test]
    fn the_token_call_cap_is_the_core_one() {
        let settings = idenfy_core::Settings::new(
            idenfy_core::Environment::Live,
            "http://x",
            WebhookKey::new("k"),
        );
        assert_eq!(MAX_TOKEN_CALLS, settings.max_mint_attempts);
    }

    #[test]
    fn a_connection_string_the_driver_refuses_is_reported_without_its_value() {
        let mut args: Vec<&str> = FULL[2..].to_vec();
        args.push("--mongodb-uri=mongodb://admin:hunter2@db.example:99999/idserver");
        let ConfigError(problems) = parse(&args).validate().expect_err("invalid");
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("MONGODB_URI is not a connection string the MongoDB driver")),
            "{problems:?}"
        );
        let all = problems.join("\n");
        for secret in ["hunter2", "admin", "db.example", "99999"] {
            assert!(!all.contains(secret), "{secret} shown: {all}");
        }
    }

    fn without_valkey() -> Vec<&'static str> {
        FULL.iter()
            .copied()
            .filter(|arg| !arg.starts_with("--valkey-url="))
            .collect()
    }

    #[test]
    fn url_schemes_are_checked_without_showing_the_values() {
        let mut args: Vec<&str> = FULL[2..].to_vec();
        args.extend([
            "--mongodb-uri=postgres://admin:hunter2@db.example/idserver",
            "--valkey-url=http://:valkeypass@cache.example:6379",
            "--idenfy-base-url=ftp://ivs.idenfy.com",
        ]);
        let ConfigError(problems) = parse(&args).validate().expect_err("invalid");
        for prefix in [
            "MONGODB_URI must start with one of mongodb://, mongodb+srv://",
            "VALKEY_URL must start with one of redis://, rediss://, valkey://, valkeys://",
            "IDENFY_BASE_URL must start with one of https://, http://",
        ] {
            assert!(
                problems.iter().any(|p| p.starts_with(prefix)),
                "{prefix}: {problems:?}"
            );
        }
        let all = problems.join("\n");
        for secret in [
            "hunter2",
            "admin",
            "valkeypass",
            "db.example",
            "cache.example",
        ] {
            assert!(!all.contains(secret), "{secret} shown: {all}");
        }

        for url in [
            "rediss://:pw@cache.example:6380",
            "valkey://127.0.0.1:6379",
            "valkeys://cache.example",
        ] {
            let mut args = without_valkey();
            let flag = format!("--valkey-url={url}");
            args.push(&flag);
            assert!(parse(&args).validate().is_ok(), "{url}");
        }
        let mut args = without_valkey();
        args.extend([
            "--valkey-url=redis://:secret@",
            "--idenfy-base-url=https://",
        ]);
        let ConfigError(problems) = parse(&args).validate().expect_err("invalid");
        assert_eq!(
            problems,
            ["VALKEY_URL names no host", "IDENFY_BASE_URL names no host"]
        );
    }

    #[test]
    fn cors_origins_are_exact_origins() {
        let mut args = FULL.to_vec();
        args.push(
            "--cors-allowed-origins= https://App.Example.com, http://localhost:3000,\
             https://app.example.com:443,http://[::1]:8080,",
        );
        let config = parse(&args).validate().expect("valid");
        assert_eq!(
            config.cors_allowed_origins,
            [
                "https://app.example.com",
                "http://localhost:3000",
                "http://[::1]:8080"
            ]
        );
        assert!(
            parse(FULL)
                .validate()
                .expect("valid")
                .cors_allowed_origins
                .is_empty()
        );
        for bad in [
            "*",
            "app.example.com",
            "https://app.example.com/",
            "https://app.example.com/path",
            "ftp://app.example.com",
            "https://user@app.example.com",
            "https://app.example.com:0",
            "https://app.example.com:http",
            "https://",
            "https://[::1",
        ] {
            let mut args = FULL.to_vec();
            let flag = format!("--cors-allowed-origins=https://ok.example,{bad}");
            args.push(&flag);
            let ConfigError(problems) = parse(&args).validate().expect_err(bad);
            assert_eq!(problems.len(), 1, "{bad}: {problems:?}");
            assert!(
                problems[0].starts_with("CORS_ALLOWED_ORIGINS: "),
                "{bad}: {problems:?}"
            );
        }
    }

    #[test]
    fn an_invalid_log_format_is_a_problem_and_falls_back_to_text() {
        let cli =
            Cli::try_parse_from(["idenfy-app", "--log-format=yaml", "serve"]).expect("parses");
        assert_eq!(cli.log_format(), LogFormat::Text);
        assert_eq!(
            cli.problems(),
            ["LOG_FORMAT must be text or json, got \"yaml\""]
        );
        let cli =
            Cli::try_parse_from(["idenfy-app", "serve", "--log-format=JSON"]).expect("parses");
        assert_eq!(cli.log_format(), LogFormat::Json);
        assert!(cli.problems().is_empty());
    }

    #[test]
    fn long_raw_values_are_cut_and_escaped() {
        assert_eq!(shown("abc"), "\"abc\"");
        assert_eq!(shown("a\nb"), "\"a\\nb\"");
        let long = "x".repeat(100);
        assert_eq!(shown(&long), format!("{:?}...", "x".repeat(40)));
    }
}
