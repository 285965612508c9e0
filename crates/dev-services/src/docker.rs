//! The `docker` backend: `mongo:8.0` and `valkey/valkey:8.1` through testcontainers.
//!
//! Plain `GenericImage`s rather than testcontainers-modules: its 0.15 release still targets
//! testcontainers 0.27, and its images default to old tags we would override anyway.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, Image};

use crate::backend::{MONGO_IMAGE, VALKEY_IMAGE};
use crate::probe::{mongo_ping, valkey_ping, wait_until};
use crate::{Backend, Result, ServiceState, State};

/// Starts both containers and waits until they answer. The containers are deliberately
/// *not* removed when their handles go away: they must outlive this process (as local
/// processes do), and `down` removes them by id.
pub(crate) async fn up() -> Result<State> {
    let mongo = GenericImage::new(MONGO_IMAGE.0, MONGO_IMAGE.1)
        .with_exposed_port(27017.tcp())
        .with_wait_for(WaitFor::message_on_stdout("Waiting for connections"))
        .start()
        .await?;
    let mongodb = describe(&mongo, 27017, "mongodb", "/", MONGO_IMAGE).await?;
    let valkey = GenericImage::new(VALKEY_IMAGE.0, VALKEY_IMAGE.1)
        .with_exposed_port(6379.tcp())
        .with_wait_for(WaitFor::message_on_stdout("Ready to accept connections"))
        .start()
        .await;
    let valkey = match valkey {
        Ok(valkey) => valkey,
        Err(error) => {
            // Dropping the handle removes the Mongo container again.
            drop(mongo);
            return Err(error.into());
        }
    };
    let valkey_state = describe(&valkey, 6379, "redis", "", VALKEY_IMAGE).await?;
    wait_until(
        "mongo container",
        Duration::from_secs(60),
        || true,
        || mongo_ping(&mongodb.url, Duration::from_secs(2)),
    )
    .await?;
    wait_until(
        "valkey container",
        Duration::from_secs(30),
        || true,
        || valkey_ping(&valkey_state.url, Duration::from_secs(1)),
    )
    .await?;
    // Keep the containers: skip the Drop that would remove them.
    std::mem::forget(mongo);
    std::mem::forget(valkey);
    let started_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    Ok(State {
        backend: Backend::Docker,
        started_at,
        mongodb,
        valkey: valkey_state,
        ferretdb: None,
    })
}

async fn describe<I: Image>(
    container: &ContainerAsync<I>,
    internal_port: u16,
    scheme: &str,
    path: &str,
    image: (&str, &str),
) -> Result<ServiceState> {
    // Always the mapped port: the container's own port number is meaningless on the host.
    let host = container.get_host().await?;
    let port = container.get_host_port_ipv4(internal_port).await?;
    Ok(ServiceState {
        url: format!("{scheme}://{host}:{port}{path}"),
        port,
        pid: None,
        container_id: Some(container.id().to_owned()),
        version: format!("{}:{}", image.0, image.1),
        command: vec![format!("{}:{}", image.0, image.1)],
        log: None,
    })
}
