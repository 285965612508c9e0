//! `cargo xtask services probe`: how atomic and how fast each MongoDB-protocol server is, as
//! our stores use them. The figures behind "which server runs where" in the README.
//!
//! - **Atomicity**: `rounds` times, `clients` tasks race the same compare-and-set,
//!   `update_one({_id, claim: null}, {$set: {claim: me}})`, on a fresh document; a server whose
//!   conditional updates are atomic has exactly one winner every round.
//! - **Throughput**: `find_one` by `_id`, and a conditional `update_one` by `_id`, from
//!   `clients` concurrent tasks for a fixed time.
//!
//! Each client task has its own connection from one driver pool. Nothing is asserted: the
//! figures are printed, once per server the backend runs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use dev_services::{Backend, MongoServer};
use mongodb::bson::{Document, doc};
use tokio::sync::Barrier;

use crate::stack::Services;

/// `cargo xtask services probe` options.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Races per server.
    #[arg(long, default_value_t = 200)]
    rounds: u32,
    /// Concurrent clients per race and per throughput measurement.
    #[arg(long, default_value_t = 16)]
    clients: u32,
    /// How long each throughput measurement runs, in seconds.
    #[arg(long, default_value_t = 3)]
    seconds: u64,
    /// Where the servers come from: auto, external, docker or local.
    #[arg(long, env = dev_services::BACKEND_VAR, default_value = "auto", value_parser = crate::parse_backend)]
    backend: Backend,
}

/// One server's figures.
#[derive(Debug)]
struct Figures {
    server: String,
    one_winner_rounds: u32,
    rounds: u32,
    max_winners: u32,
    reads_per_second: f64,
    updates_per_second: f64,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let services = Services::start("probe", args.backend, MongoServer::JavaServer).await?;
    let result = async {
        let mut figures = Vec::new();
        for server in MongoServer::ALL {
            let Some(service) = services.state.mongo(server) else {
                continue;
            };
            let label = service
                .version
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned();
            println!("probing {label} at {}", service.url);
            figures.push(probe(&service.url, label, &args).await?);
        }
        anyhow::Ok(figures)
    }
    .await;
    services.stop(result.is_err()).await?;
    let figures = result?;
    println!(
        "\n| server | rounds with exactly one winner | most winners in a round | find_one c={c} | conditional update c={c} |\n|---|---|---|---|---|",
        c = args.clients
    );
    for f in &figures {
        println!(
            "| {} | {} of {} | {} | {:.0}/s | {:.0}/s |",
            f.server,
            f.one_winner_rounds,
            f.rounds,
            f.max_winners,
            f.reads_per_second,
            f.updates_per_second
        );
    }
    Ok(())
}

async fn probe(url: &str, server: String, args: &Args) -> anyhow::Result<Figures> {
    let clients = args.clients.max(1);
    let mut options = mongodb::options::ClientOptions::parse(url).await?;
    options.server_selection_timeout = Some(Duration::from_secs(5));
    options.max_pool_size = Some(clients + 4);
    options.app_name = Some("xtask-probe".to_owned());
    let client = mongodb::Client::with_options(options)?;
    let database = client.database(&dev_services::unique_name("probe"));
    let collection = database.collection::<Document>("probe");

    let mut one_winner_rounds = 0;
    let mut max_winners = 0;
    for round in 0..args.rounds {
        let id = i64::from(round);
        collection
            .insert_one(doc! { "_id": id, "claim": null })
            .await
            .context("inserting a race document")?;
        let barrier = Arc::new(Barrier::new(clients as usize));
        let racers: Vec<_> = (0..clients)
            .map(|me| {
                let (collection, barrier) = (collection.clone(), Arc::clone(&barrier));
                tokio::spawn(async move {
                    barrier.wait().await;
                    collection
                        .update_one(
                            doc! { "_id": id, "claim": null },
                            doc! { "$set": { "claim": i64::from(me) } },
                        )
                        .await
                        .map(|result| result.modified_count > 0)
                })
            })
            .collect();
        let mut winners = 0;
        for racer in racers {
            if racer.await.context("a racer panicked")?.context("racing")? {
                winners += 1;
            }
        }
        if winners == 1 {
            one_winner_rounds += 1;
        }
        max_winners = max_winners.max(winners);
    }

    let seconds = Duration::from_secs(args.seconds.max(1));
    let keys = i64::from(args.rounds.max(1));
    let reader = collection.clone();
    let reads = throughput(clients, seconds, move |n| {
        let collection = reader.clone();
        async move {
            collection
                .find_one(doc! { "_id": n % keys })
                .await
                .map(|_| ())
        }
    })
    .await?;
    let updater = collection.clone();
    let updates = throughput(clients, seconds, move |n| {
        let collection = updater.clone();
        async move {
            collection
                .update_one(
                    doc! { "_id": n % keys, "claim": { "$ne": -1 } },
                    doc! { "$inc": { "n": 1 } },
                )
                .await
                .map(|_| ())
        }
    })
    .await?;
    database
        .drop()
        .await
        .context("dropping the probe database")?;
    client.shutdown().await;
    Ok(Figures {
        server,
        one_winner_rounds,
        rounds: args.rounds,
        max_winners,
        reads_per_second: reads,
        updates_per_second: updates,
    })
}

/// Operations per second of `clients` tasks running `operation` back to back for `time`.
async fn throughput<F, Fut>(clients: u32, time: Duration, operation: F) -> anyhow::Result<f64>
where
    F: Fn(i64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = mongodb::error::Result<()>> + Send,
{
    let started = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|worker| {
            let operation = operation.clone();
            tokio::spawn(async move {
                let mut done: u64 = 0;
                let mut n = i64::from(worker);
                while started.elapsed() < time {
                    operation(n).await?;
                    done += 1;
                    n += i64::from(clients);
                }
                mongodb::error::Result::Ok(done)
            })
        })
        .collect();
    let mut total: u64 = 0;
    for worker in workers {
        total += worker.await.context("a worker panicked")??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}
