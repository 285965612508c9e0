//! HTTP client for the iDenfy API (token, status, data) implementing the idenfy-core port.
//!
//! - [`IdenfyClient`] implements [`idenfy_core::IdenfyApi`] over one `reqwest::Client`:
//!   Basic auth, iDenfy's error body mapped to [`IdenfyErrorKind`], `status`/`data` retried
//!   on transient failures, `mint` never retried (each call may bill a credit).
//! - [`ClientConfig`]: credentials in a [`Secret`], timeouts, [`TokenOptions`], [`RetryPolicy`].
//! - [`webhook`]: the webhook payload and `Idenfy-Event-Type` values, for consumers and tests.

#![warn(missing_docs)]

mod client;
mod config;
mod error;
pub mod webhook;

pub use client::IdenfyClient;
pub use config::{
    BuildError, ClientConfig, DEFAULT_BASE_URL, DEFAULT_REQUEST_TIMEOUT, DEFAULT_RETRY_BUDGET,
    RetryPolicy, Secret, TokenOptions,
};
pub use idenfy_core::{IdenfyApi, IdenfyError, IdenfyErrorKind, MintedToken, StatusReport};
pub use webhook::{EventType, WebhookPayload, WebhookStatus};
