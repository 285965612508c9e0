//! Tracing set-up: text or JSON lines on stderr, filtered by `RUST_LOG` (default `info`).

use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::LogFormat;

/// The filter when `RUST_LOG` is unset (or blank).
const DEFAULT_FILTER: &str = "info";

/// The filter `RUST_LOG` asks for: the default when unset or blank, else its directives,
/// every one of which must parse.
fn filter_from_env() -> Result<EnvFilter, String> {
    match std::env::var(EnvFilter::DEFAULT_ENV) {
        Err(std::env::VarError::NotPresent) => Ok(EnvFilter::new(DEFAULT_FILTER)),
        Err(std::env::VarError::NotUnicode(_)) => Err("RUST_LOG is not valid UTF-8".to_owned()),
        Ok(directives) if directives.trim().is_empty() => Ok(EnvFilter::new(DEFAULT_FILTER)),
        Ok(directives) => EnvFilter::builder()
            .parse(&directives)
            .map_err(|error| format!("RUST_LOG is not a valid log filter: {error}")),
    }
}

/// Installs the global subscriber. Safe to call twice (the second call does nothing).
///
/// An invalid `RUST_LOG` is not silently replaced: the subscriber is installed with the
/// default filter (so the problem can be logged) and the problem is returned, naming
/// `RUST_LOG`, for the caller to refuse to start with.
pub fn init(format: LogFormat) -> Result<(), String> {
    let (filter, problem) = match filter_from_env() {
        Ok(filter) => (filter, None),
        Err(problem) => (EnvFilter::new(DEFAULT_FILTER), Some(problem)),
    };
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Text => registry
            .with(
                fmt::layer()
                    // Colours only for a terminal, never into log files.
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    if result.is_err() {
        tracing::debug!("a tracing subscriber was already installed");
    }
    problem.map_or(Ok(()), Err)
}
