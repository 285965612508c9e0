//! A local, faithful stand-in for the iDenfy API: tokens, statuses, hosted UI and signed webhooks.
//!
//! [`Sim::start`] binds an HTTP server (loopback only) that speaks iDenfy's KYC v2 protocol:
//! `POST /api/v2/token`, `POST /api/v2/status`, `POST /api/v2/data` with Basic auth and
//! iDenfy's error shape, a no-JavaScript hosted page at `GET /api/v2/redirect?authToken=`,
//! and signed result/expiry webhooks with retries. The returned [`SimHandle`] (and the same
//! operations under `/admin/...` over HTTP) controls the clock, decides verifications,
//! scripts faults and reads call counters.
//!
//! The crate knows nothing of the rest of the workspace: it only speaks iDenfy's protocol.

#![warn(missing_docs)]

mod admin;
mod api;
mod config;
mod fault;
mod hosted;
mod server;
mod state;
mod webhook;

pub use config::SimConfig;
pub use fault::{Endpoint, Fault};
pub use server::{Sim, SimHandle};
pub use state::{Counters, DeliveryRecord, Outcome, SessionSnapshot, SimStatus};
pub use webhook::{EventType, sign, verify};
