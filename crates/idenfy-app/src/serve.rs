//! `idenfy-app serve`: production wiring (MongoDB, Valkey, the iDenfy API), the listener
//! and graceful shutdown.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use idenfy_client::{ClientConfig, IdenfyClient, TokenOptions};
use idenfy_core::{
    Clock, Environment, Ports, Sessions, Settings,
    journal::{MintJournal, ReplayReport},
};
use lock_valkey::{ValkeyLock, ValkeyOptions};
use store_mongo::{MongoIntentStore, MongoOptions, MongoParentStore, MongoRowStore, MongoStores};
use tokio::net::TcpListener;

use idenfy_http::{AppState, BoxFuture, Health, HealthProbe, error::chain};

use crate::{
    config::{Credentials, ServeConfig, Tuning},
    journal::FileJournal,
};

/// How long start-up waits for MongoDB before refusing to start.
const STARTUP_PING_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `/readyz` waits for each service.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// One production environment.
pub type ProductionSessions = Sessions<
    Ports<MongoRowStore, MongoParentStore, MongoIntentStore, ValkeyLock, IdenfyClient, TokioClock>,
>;

/// The settings of one environment from the validated configuration.
pub fn settings(
    environment: Environment,
    redirect_base: &str,
    credentials: &Credentials,
    tuning: Tuning,
) -> Settings {
    let mut settings = Settings::new(environment, redirect_base, credentials.webhook_key.clone());
    settings.recreation_cap = tuning.recreation_cap;
    settings.lock_ttl = tuning.lock_ttl;
    settings.claim_ttl = tuning.claim_ttl;
    settings.persist_retry = tuning.persist_retry;
    settings.unknown_outcome_backoff = tuning.unknown_mint_backoff;
    settings.max_unknown_mint_outcomes = tuning.max_unknown_mint_outcomes;
    settings.poll_interval = tuning.poll_interval;
    settings
}

/// The wall clock, waiting on tokio's timer.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    fn now(&self) -> idenfy_core::Timestamp {
        chrono::Utc::now()
    }

    fn sleep(&self, duration: Duration) -> futures::future::BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// How often the mint journal is looked at; a replay runs only while it holds entries, and
/// must attach a journaled token soon after the store answers again, before its claim
/// lapses and another replica mints.
const JOURNAL_REPLAY_EVERY: Duration = Duration::from_secs(1);

/// Replays the journal of each environment now, then every second while entries remain
/// (until the store takes them), logging what it settled.
fn replay_journal(sessions: Vec<Arc<ProductionSessions>>, journal: Arc<FileJournal>) {
    tokio::spawn(async move {
        loop {
            if !journal.pending().is_empty() {
                for environment in &sessions {
                    let report = environment.replay_journal().await;
                    if report != ReplayReport::default() {
                        tracing::info!(
                            environment = environment.settings().environment.as_str(),
                            attached = report.attached,
                            orphaned = report.orphaned,
                            kept = report.kept,
                            "mint journal replayed"
                        );
                    }
                }
            }
            tokio::time::sleep(JOURNAL_REPLAY_EVERY).await;
        }
    });
}

/// An iDenfy client for one environment's credentials.
pub fn client(
    base_url: &str,
    credentials: &Credentials,
    token_options: &TokenOptions,
) -> anyhow::Result<IdenfyClient> {
    let mut config =
        ClientConfig::new(credentials.api_key.expose(), credentials.api_secret.clone())
            .with_base_url(base_url);
    config.token_options = token_options.clone();
    IdenfyClient::new(config).context("building the iDenfy client (IDENFY_BASE_URL)")
}

/// `/readyz` against the real services.
#[derive(Debug)]
struct Probe {
    stores: MongoStores,
    lock: ValkeyLock,
}

impl HealthProbe for Probe {
    fn check(&self) -> BoxFuture<'_, Health> {
        Box::pin(async move {
            let (mongodb, valkey) = tokio::join!(
                tokio::time::timeout(READY_TIMEOUT, self.stores.ping()),
                tokio::time::timeout(READY_TIMEOUT, self.lock.ping()),
            );
            let mongodb = match mongodb {
                Ok(Ok(())) => true,
                Ok(Err(error)) => {
                    tracing::warn!(error = %chain(&error), "readiness: MongoDB ping failed");
                    false
                }
                Err(_) => {
                    tracing::warn!("readiness: MongoDB ping timed out");
                    false
                }
            };
            Health {
                mongodb,
                valkey: matches!(valkey, Ok(Ok(()))),
            }
        })
    }
}

/// One environment's service: its stores and lock, an iDenfy client with its credentials,
/// its settings, and the process's mint journal.
fn environment_sessions(
    environment: Environment,
    stores: &MongoStores,
    lock: ValkeyLock,
    credentials: &Credentials,
    config: &ServeConfig,
    journal: &Arc<FileJournal>,
) -> anyhow::Result<Arc<ProductionSessions>> {
    let backend = Ports {
        rows: stores.rows().clone(),
        parents: stores.parents().clone(),
        intents: stores.intents().clone(),
        lock,
        idenfy: client(&config.idenfy_base_url, credentials, &config.token_options)?,
        clock: TokioClock,
    };
    let settings = settings(
        environment,
        &config.idenfy_base_url,
        credentials,
        config.tuning,
    );
    Ok(Arc::new(
        Sessions::builder(backend, settings)
            .journal(journal.clone())
            .build(),
    ))
}

/// Connects, checks, serves until SIGTERM or Ctrl-C, then closes the clients.
pub async fn run(config: ServeConfig) -> anyhow::Result<()> {
    let metrics = crate::metrics::handle();
    idenfy_http::listener::raise_nofile_limit();

    let stores = MongoStores::connect(
        config.mongodb_uri.expose(),
        &config.mongodb_database,
        Environment::Live,
        MongoOptions {
            write_mode: config.mongodb_write_mode,
            max_pool_size: Some(config.mongodb_max_pool_size),
            ..MongoOptions::default()
        },
    )
    .await
    .map_err(|error| anyhow::anyhow!("MONGODB_URI: cannot connect: {}", chain(&error)))?;
    match tokio::time::timeout(STARTUP_PING_TIMEOUT, stores.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => anyhow::bail!(
            "MongoDB (MONGODB_URI) is unreachable, refusing to start: {}",
            chain(&error)
        ),
        Err(_) => anyhow::bail!(
            "MongoDB (MONGODB_URI) did not answer within {:?}, refusing to start",
            STARTUP_PING_TIMEOUT
        ),
    }
    match stores.write_mode().await {
        Ok(mode) => tracing::info!(
            setting = %config.mongodb_write_mode,
            write_mode = mode.as_str(),
            "MongoDB conditional writes are {mode} (MONGODB_WRITE_MODE={})",
            config.mongodb_write_mode
        ),
        Err(error) => anyhow::bail!(
            "MONGODB_WRITE_MODE=auto: cannot ask the server what it is: {}",
            chain(&error)
        ),
    }
    let mut environments = vec![Environment::Live];
    if config.sandbox.is_some() {
        environments.push(Environment::Sandbox);
    }
    for environment in environments {
        match stores.for_environment(environment).ensure_indexes().await {
            Ok(report) => tracing::info!(
                environment = environment.as_str(),
                ensured = report.ensured.len(),
                rejected = report.rejected.len(),
                "indexes ensured"
            ),
            Err(error) => anyhow::bail!("creating indexes failed: {}", chain(&error)),
        }
    }

    let lock = ValkeyLock::connect(
        config.valkey_url.expose(),
        Environment::Live,
        ValkeyOptions::default(),
    )
    .await
    .map_err(|error| anyhow::anyhow!("VALKEY_URL: {}", chain(&error)))?;
    if let Err(error) = lock.ping().await {
        // The lock is an optimisation; the MongoDB claim is the guard against double mints.
        tracing::warn!(
            error = %chain(&error),
            "Valkey is unreachable: starting degraded (recreate lock unavailable until it answers)"
        );
    }

    let journal = Arc::new(
        FileJournal::open(&config.data_dir)
            .map_err(|error| anyhow::anyhow!("DATA_DIR: {error}"))?,
    );
    let waiting = journal.pending().len();
    if waiting > 0 {
        tracing::warn!(
            entries = waiting,
            path = %journal.path().display(),
            "the mint journal holds tokens from an earlier run; attaching them"
        );
    }
    let live = environment_sessions(
        Environment::Live,
        &stores,
        lock.clone(),
        &config.live,
        &config,
        &journal,
    )?;
    let mut environments = vec![Arc::clone(&live)];
    tracing::info!(
        polls = config.admission.polls,
        priority = config.admission.priority,
        pool = config.mongodb_max_pool_size,
        "admission control: requests in flight per class before shedding"
    );
    let mut state = AppState::new(live, metrics)
        .with_admission(config.admission)
        .with_internal_token(config.internal_token.clone())
        .with_health(Arc::new(Probe {
            stores: stores.clone(),
            lock: lock.clone(),
        }));
    if let Some(credentials) = &config.sandbox {
        let sandbox = environment_sessions(
            Environment::Sandbox,
            &stores.for_environment(Environment::Sandbox),
            lock.for_environment(Environment::Sandbox),
            credentials,
            &config,
            &journal,
        )?;
        environments.push(Arc::clone(&sandbox));
        state = state.with_sandbox(sandbox);
    }
    replay_journal(environments, journal);

    let listener = TcpListener::bind(config.listen_addr)
        .await
        .with_context(|| format!("LISTEN_ADDR: cannot listen on {}", config.listen_addr))?;
    let address = listener.local_addr().context("reading the bound address")?;
    tracing::info!(
        %address,
        sandbox = config.sandbox.is_some(),
        "idenfy-app serving"
    );
    if !config.cors_allowed_origins.is_empty() {
        tracing::info!(
            origins = ?config.cors_allowed_origins,
            "CORS: these origins may call the user routes"
        );
    }
    idenfy_http::listener::serve(
        listener,
        idenfy_http::with_cors(idenfy_http::router(state), &config.cors_allowed_origins),
        config.connections,
        shutdown_signal(),
    )
    .await;
    tracing::info!("HTTP server stopped; closing MongoDB and Valkey clients");
    lock.shutdown().await;
    stores.shutdown().await;
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}
