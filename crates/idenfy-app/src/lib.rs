//! The idenfy-sessions service: configuration, wiring and dev mode around the HTTP API of
//! `idenfy-http`.
//!
//! - [`config`]: the command line and environment (clap), validated into [`config::ServeConfig`].
//! - [`serve`]: production wiring: MongoDB (`store-mongo`), Valkey (`lock-valkey`) and
//!   iDenfy (`idenfy-client`) behind `idenfy_http::router`, served by
//!   `idenfy_http::listener`.
//! - `dev` (the `dev` feature, on by default): the in-memory adapters and an in-process
//!   idenfy-sim. A production build leaves it out:
//!   `cargo build -p idenfy-app --no-default-features` carries no simulator.
//! - [`journal`]: the file that keeps paid tokens the store could not take;
//!   [`metrics`]: the process's Prometheus recorder; [`telemetry`]: logging.

#![warn(missing_docs)]

pub mod config;
#[cfg(feature = "dev")]
pub mod dev;
pub mod journal;
pub mod metrics;
pub mod serve;
pub mod telemetry;
