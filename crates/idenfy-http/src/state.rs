//! What every handler shares: the per-environment services, the service token, the health
//! probe and the metrics handle.

use std::{fmt, future::Future, pin::Pin, sync::Arc, time::Duration};

use idenfy_core::{Backend, Environment, Sessions};
use metrics_exporter_prometheus::PrometheusHandle;
use secrecy::SecretString;

use crate::admission::{Admission, AdmissionLimits};

/// What `/readyz` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Health {
    /// MongoDB answered a ping (required for readiness).
    pub mongodb: bool,
    /// Valkey answered (optional: the lock is an optimisation).
    pub valkey: bool,
}

/// A boxed future, for the one trait object below.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Checks the backing services for `/readyz`.
pub trait HealthProbe: Send + Sync + 'static {
    /// Checks the backing services now and reports which answered; every `GET /readyz`
    /// awaits one call.
    fn check(&self) -> BoxFuture<'_, Health>;
}

/// Always healthy: the in-memory adapters of `dev` and tests.
#[derive(Clone, Copy, Debug, Default)]
pub struct AlwaysUp;

impl HealthProbe for AlwaysUp {
    fn check(&self) -> BoxFuture<'_, Health> {
        Box::pin(async {
            Health {
                mongodb: true,
                valkey: true,
            }
        })
    }
}

/// Time limits of the HTTP layer; past them the client gets 503 JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Webhooks: iDenfy waits 10 s, so answer well before (default 8 s).
    pub webhook: Duration,
    /// Every other request (default 15 s).
    pub request: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            webhook: Duration::from_secs(8),
            request: Duration::from_secs(15),
        }
    }
}

/// Everything the router needs. Held in an `Arc` by axum.
pub struct AppState<B> {
    /// The live environment's service: the user routes and the webhook outside `/sandbox`,
    /// and the internal routes (which create live sessions only).
    pub live: Arc<Sessions<B>>,
    /// `None` when the sandbox credentials are not configured: sandbox routes answer 404.
    pub sandbox: Option<Arc<Sessions<B>>>,
    /// `Authorization: Bearer` of the internal routes; `None` refuses every call.
    pub internal_token: Option<SecretString>,
    /// Checks the backing services for `/readyz`.
    pub health: Arc<dyn HealthProbe>,
    /// Renders the Prometheus registry for `/metrics`.
    pub metrics: PrometheusHandle,
    /// The time limits of the requests.
    pub timeouts: Timeouts,
    /// The in-flight budgets of this replica.
    pub admission: Arc<Admission>,
}

impl<B: Backend> AppState<B> {
    /// The state of a service with the live environment only: no sandbox (its routes answer
    /// 404), no internal token (the internal routes refuse every call), always ready
    /// ([`AlwaysUp`]), default [`Timeouts`] and default [`AdmissionLimits`]. The `with_*`
    /// methods change each of these.
    pub fn new(live: Arc<Sessions<B>>, metrics: PrometheusHandle) -> Self {
        Self {
            live,
            sandbox: None,
            internal_token: None,
            health: Arc::new(AlwaysUp),
            metrics,
            timeouts: Timeouts::default(),
            admission: Arc::new(Admission::new(AdmissionLimits::default())),
        }
    }

    /// Replaces the in-flight budgets with new ones of `limits`.
    pub fn with_admission(mut self, limits: AdmissionLimits) -> Self {
        self.admission = Arc::new(Admission::new(limits));
        self
    }

    /// Sets the time limits of the requests.
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Serves the sandbox environment, the routes under `/sandbox`, with `sandbox`.
    pub fn with_sandbox(mut self, sandbox: Arc<Sessions<B>>) -> Self {
        self.sandbox = Some(sandbox);
        self
    }

    /// Accepts `Authorization: Bearer <token>` on the internal routes (an empty `token`
    /// still refuses every call).
    pub fn with_internal_token(mut self, token: impl Into<SecretString>) -> Self {
        self.internal_token = Some(token.into());
        self
    }

    /// Sets the probe behind `/readyz`.
    pub fn with_health(mut self, health: Arc<dyn HealthProbe>) -> Self {
        self.health = health;
        self
    }

    /// The service of `environment`, if configured.
    pub fn environment(&self, environment: Environment) -> Option<&Arc<Sessions<B>>> {
        match environment {
            Environment::Live => Some(&self.live),
            Environment::Sandbox => self.sandbox.as_ref(),
        }
    }
}

impl<B> fmt::Debug for AppState<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppState")
            .field("sandbox", &self.sandbox.is_some())
            .field("internal_token", &self.internal_token)
            .finish_non_exhaustive()
    }
}
