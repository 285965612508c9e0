//! The idenfy-sessions HTTP service: configuration, wiring, the axum router, dev mode.
//!
//! - [`http::router`] builds the whole service for any [`state::Service`] (the six port
//!   types of one environment's `Sessions`), so `serve`, `dev` and tests share it.
//! - [`config`]: the command line and environment (clap), validated into [`config::ServeConfig`].
//! - [`serve`]: production wiring (MongoDB, Valkey, iDenfy); `dev` (the `dev` feature, on
//!   by default): in-memory + idenfy-sim. A production build leaves it out:
//!   `cargo build -p idenfy-app --no-default-features` carries no simulator.
//! - [`listener`]: serves the router with connection timeouts and a connection limit.

#![warn(missing_docs)]

pub mod config;
#[cfg(feature = "dev")]
pub mod dev;
pub mod http;
pub mod journal;
pub mod listener;
pub mod metrics;
pub mod openapi;
pub mod serve;
pub mod state;
pub mod telemetry;

pub use http::router;
pub use state::{AppState, Health, HealthProbe, Service, Timeouts};
