//! `cargo xtask test`: services up, `cargo test` against them, services down (always).

use anyhow::{Context, bail};
use dev_services::{Backend, Layout};

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

    let mut test = cargo();
    test.arg("test");
    if !selects_packages(cargo_args) {
        test.arg("--workspace");
    }
    test.args(cargo_args)
        .env(dev_services::MONGODB_URI_VAR, &up.state.mongodb.url)
        .env(dev_services::VALKEY_URL_VAR, &up.state.valkey.url)
        .env(dev_services::REQUIRE_SERVICES_VAR, "1")
        .env(dev_services::STATE_FILE_VAR, &layout.state_file);
    println!("$ cargo test {}", test_args_display(cargo_args));
    let result = match test.spawn() {
        Err(error) => Err(anyhow::Error::new(error).context("starting cargo test")),
        Ok(mut child) => tokio::select! {
            status = child.wait() => match status {
                Ok(status) if status.success() => Ok(()),
                Ok(status) => Err(anyhow::anyhow!("cargo test failed ({status})")),
                Err(error) => Err(anyhow::Error::new(error).context("waiting for cargo test")),
            },
            signal = &mut signal => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                Err(anyhow::anyhow!("interrupted by {signal} while running cargo test"))
            }
        },
    };

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

fn test_args_display(cargo_args: &[String]) -> String {
    if selects_packages(cargo_args) {
        cargo_args.join(" ")
    } else {
        std::iter::once("--workspace".to_owned())
            .chain(cargo_args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::selects_packages;

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
}
