//! The idenfy-sessions HTTP API as a library: an axum [`Router`](axum::Router) over any
//! [`idenfy_core::Backend`], with everything a production edge needs around it.
//!
//! - [`router`] (and [`dev_router`], which adds the `/docs` page) builds the whole API from
//!   an [`AppState`]: the live environment's [`Sessions`](idenfy_core::Sessions), optionally
//!   the sandbox's, the internal service token, the readiness probe, the metrics handle,
//!   the time limits and the admission budgets.
//! - [`admission`]: the per-replica in-flight budgets that shed overload early with
//!   `503` + `Retry-After`.
//! - [`listener`]: serves the router over HTTP/1.1 with header-read and idle timeouts, a
//!   connection limit and a bounded graceful drain.
//! - [`metrics`]: the Prometheus recorder and the families the API exports;
//!   [`openapi`]: the OpenAPI 3.1 document served at `/openapi.json`.
//!
//! The crate does no wiring of its own: it does not read configuration, connect to a store
//! or know iDenfy's simulator. The `idenfy-app` binary builds the backend (MongoDB, Valkey,
//! iDenfy) and hands it here; so can your own server:
//!
//! ```
//! use std::sync::Arc;
//!
//! use idenfy_core::memory::{MemoryIntentStore, MemoryLock, MemoryParentStore, MemoryRowStore};
//! use idenfy_core::testing::ScriptedIdenfy;
//! use idenfy_core::{Environment, Ports, Sessions, Settings, SystemClock, WebhookKey};
//! use idenfy_http::AppState;
//!
//! let live = Sessions::builder(
//!     Ports {
//!         rows: MemoryRowStore::new(),
//!         parents: MemoryParentStore::new(),
//!         intents: MemoryIntentStore::new(),
//!         lock: MemoryLock::new(SystemClock),
//!         idenfy: ScriptedIdenfy::new(),
//!         clock: SystemClock,
//!     },
//!     Settings::new(Environment::Live, "https://ivs.idenfy.com", WebhookKey::new("key")),
//! )
//! .build();
//! // A binary installs a global recorder and passes its handle; this one stays detached.
//! let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
//!     .build_recorder()
//!     .handle();
//! let app: axum::Router = idenfy_http::router(AppState::new(Arc::new(live), metrics));
//! # drop(app);
//! ```

#![warn(missing_docs)]

pub mod admission;
pub mod error;
pub mod identity;
pub mod listener;
pub mod metrics;
pub mod openapi;
mod router;
pub mod routes;
pub mod state;

pub use router::{MAX_REQUEST_ID_LEN, Quiet, WEBHOOK_BODY_LIMIT, dev_router, router, with_cors};
pub use state::{AlwaysUp, AppState, BoxFuture, Health, HealthProbe, Timeouts};
