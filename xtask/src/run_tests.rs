//! `cargo xtask test`: services up, `cargo test` against them, services down (always).
//!
//! The server matrix: the whole workspace runs against the default MongoDB-protocol server
//! (mongo-java-server locally: atomic writes, the path production takes on MongoDB); then,
//! where the backend also runs FerretDB, the store-mongo suite runs a second time against
//! it (serialised writes). Each leg tells the suite which write mode it must find.

use anyhow::{Context, bail};
use dev_services::{Backend, Layout, MongoServer, State};

use crate::shell::{cargo, interrupted};

/// Starts services of its own (installing what is missing), runs `cargo test` with
/// `MONGODB_URI`, `VALKEY_URL` and `IDENFY_REQUIRE_SERVICES=1`, and always stops them
/// afterwards — also when the tests fail or the run is interrupted.
///
/// The services live in `target/services/test-<pid>/`, apart from those of
/// `cargo xtask services up` and of any other `cargo xtask test` running in the same
/// checkout, so that no run stops servers another one still uses.
pub(crate) async fn run(backend: Backend, cargo_args: &[String]) -> anyhow::Result<()> {
    // Listen for Ctrl-C/SIGTERM from the start, so no signal can kill us between starting
    // the servers and stopping them.
    let signal = interrupted();
    tokio::pin!(signal);

    let layout = Layout::from_env().isolated(&format!("test-{}", std::process::id()));
    let up = tokio::select! {
        up = dev_services::up_in(&layout, backend) => up,
        signal = &mut signal => {
            eprintln!("interrupted by {signal} while starting the services; cleaning up");
            dev_services::down_in(&layout).await.context("stopping the services")?;
            bail!("interrupted by {signal}");
        }
    };
    let up = match up {
        Ok(up) => up,
        Err(error) => {
            // Whatever was started before the failure is named by pid files; stop it.
            let _ = dev_services::down_in(&layout).await;
            return Err(anyhow::Error::new(error).context("starting the services"));
        }
    };

    let mut legs = vec![Leg {
        label: first_line(&up.state.mongodb.version).to_owned(),
        mongodb_uri: up.state.mongodb.url.clone(),
        expect_write_mode: expected_write_mode(&up.state, MongoServer::JavaServer),
        args: workspace_args(cargo_args),
    }];
    match (&up.state.ferretdb, runs_store_mongo(cargo_args)) {
        (Some(ferretdb), true) => legs.push(Leg {
            label: first_line(&ferretdb.version).to_owned(),
            mongodb_uri: ferretdb.url.clone(),
            expect_write_mode: Some("serialised"),
            args: store_mongo_args(cargo_args),
        }),
        (None, true) => println!(
            "the {} backend runs no FerretDB: the store-mongo suite runs once",
            up.state.backend
        ),
        (_, false) => {}
    }
    let mut result = Ok(());
    for leg in &legs {
        result = tokio::select! {
            result = leg.run(&up.state, &layout) => result,
            signal = &mut signal => Err(anyhow::anyhow!("interrupted by {signal} while running cargo test")),
        };
        if result.is_err() {
            break;
        }
    }
    if result.is_ok() && legs.len() > 1 {
        println!("server matrix passed:");
        for leg in &legs {
            println!("  {}: {}", leg.label, leg.args.join(" "));
        }
    }

    if up.started {
        if let Err(error) = dev_services::down_in(&layout).await {
            eprintln!("error stopping the services: {error:#}");
            return result.and(Err(error.into()));
        }
        if result.is_ok() {
            // Keep data and logs of a failed run for inspection; drop those of a green one.
            let _ = std::fs::remove_dir_all(&layout.services_dir);
        } else {
            println!("logs kept in {}", layout.services_dir.display());
        }
    }
    result
}

/// One `cargo test` run of the matrix.
#[derive(Debug)]
struct Leg {
    label: String,
    mongodb_uri: String,
    /// `atomic` or `serialised`; `None` where we cannot know (docker, external).
    expect_write_mode: Option<&'static str>,
    args: Vec<String>,
}

impl Leg {
    async fn run(&self, state: &State, layout: &Layout) -> anyhow::Result<()> {
        let mut test = cargo();
        test.arg("test")
            .args(&self.args)
            .env(dev_services::MONGODB_URI_VAR, &self.mongodb_uri)
            .env(dev_services::VALKEY_URL_VAR, &state.valkey.url)
            .env(dev_services::REQUIRE_SERVICES_VAR, "1")
            .env(dev_services::STATE_FILE_VAR, &layout.state_file)
            .kill_on_drop(true);
        match self.expect_write_mode {
            Some(mode) => test.env(dev_services::EXPECT_WRITE_MODE_VAR, mode),
            None => test.env_remove(dev_services::EXPECT_WRITE_MODE_VAR),
        };
        println!(
            "\n$ cargo test {}   # on {}, {} writes",
            self.args.join(" "),
            self.label,
            self.expect_write_mode.unwrap_or("auto-detected")
        );
        let status = test.status().await.context("running cargo test")?;
        if status.success() {
            Ok(())
        } else {
            bail!("cargo test on {} failed ({status})", self.label)
        }
    }
}

/// The write mode the store must use on `server` of a local state (atomic on
/// mongo-java-server); unknown for the other backends.
fn expected_write_mode(state: &State, server: MongoServer) -> Option<&'static str> {
    (state.backend == Backend::Local).then_some(match server {
        MongoServer::JavaServer => "atomic",
        MongoServer::FerretDb => "serialised",
    })
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

/// The first leg's arguments: `--workspace` unless the user chose packages.
fn workspace_args(cargo_args: &[String]) -> Vec<String> {
    let mut args = Vec::new();
    if !selects_packages(cargo_args) {
        args.push("--workspace".to_owned());
    }
    args.extend(cargo_args.iter().cloned());
    args
}

/// Whether the first leg runs the store-mongo suite (all packages, or it is chosen).
fn runs_store_mongo(cargo_args: &[String]) -> bool {
    let before_test_args = || cargo_args.iter().take_while(|arg| arg.as_str() != "--");
    !selects_packages(cargo_args)
        || before_test_args().any(|arg| arg == "--workspace")
        || before_test_args().any(|arg| arg.contains("store-mongo"))
}

/// The FerretDB leg: the store-mongo package, with the user's test-binary arguments.
fn store_mongo_args(cargo_args: &[String]) -> Vec<String> {
    let mut args = vec!["-p".to_owned(), "store-mongo".to_owned()];
    args.extend(
        cargo_args
            .iter()
            .skip_while(|arg| arg.as_str() != "--")
            .cloned(),
    );
    args
}

/// Whether the user already chose packages (then `--workspace` must not be added).
fn selects_packages(cargo_args: &[String]) -> bool {
    cargo_args
        .iter()
        .take_while(|arg| arg.as_str() != "--")
        .any(|arg| {
            arg == "-p"
                || arg.starts_with("-p")
                || arg == "--package"
                || arg.starts_with("--package=")
                || arg == "--workspace"
                || arg == "--manifest-path"
        })
}

#[cfg(test)]
mod tests {
    use super::{runs_store_mongo, selects_packages, store_mongo_args};

    fn args(words: &[&str]) -> Vec<String> {
        words.iter().map(|word| (*word).to_owned()).collect()
    }

    #[test]
    fn package_selection_is_detected_before_the_test_binary_args() {
        assert!(selects_packages(&args(&["-p", "store-mongo"])));
        assert!(selects_packages(&args(&["--package=lock-valkey"])));
        assert!(!selects_packages(&args(&["--", "-p"])));
        assert!(!selects_packages(&args(&["--release"])));
    }

    #[test]
    fn the_ferretdb_leg_runs_store_mongo_with_the_test_binary_args() {
        assert!(runs_store_mongo(&args(&[])));
        assert!(runs_store_mongo(&args(&["-p", "store-mongo"])));
        assert!(!runs_store_mongo(&args(&["-p", "idenfy-app"])));
        assert!(!runs_store_mongo(&args(&[
            "-p",
            "lock-valkey",
            "--",
            "store-mongo"
        ])));
        assert_eq!(
            store_mongo_args(&args(&["-p", "idenfy-core", "--", "--nocapture"])),
            args(&["-p", "store-mongo", "--", "--nocapture"])
        );
    }
}
