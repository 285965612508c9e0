//! `cargo xtask services install|up|down|status`.

use anyhow::Context;

use crate::ServicesAction;

pub(crate) async fn run(action: ServicesAction) -> anyhow::Result<()> {
    match action {
        ServicesAction::Install => {
            dev_services::install()
                .await
                .context("installing the servers")?;
        }
        ServicesAction::Up { backend } => {
            dev_services::up(backend.backend)
                .await
                .context("starting the services")?;
        }
        ServicesAction::Down => {
            dev_services::down()
                .await
                .context("stopping the services")?;
        }
        ServicesAction::Probe(args) => crate::probe::run(args).await?,
        ServicesAction::Status => {
            dev_services::status()
                .await
                .context("reading the services state")?;
        }
    }
    Ok(())
}
