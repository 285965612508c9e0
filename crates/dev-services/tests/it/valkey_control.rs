//! `ValkeyControl` stops the local Valkey (clients lose it) and restarts it on the same port.

use std::io::Write;
use std::time::Duration;

use dev_services::{Error, ValkeyControl, urls_for_test};
use fred::prelude::{Builder, ClientLike, Config};

/// `PING` through a one-off fred client that does not reconnect; `Err` when nothing
/// listens.
async fn ping(url: &str) -> Result<String, fred::error::Error> {
    let client = Builder::from_config(Config::from_url(url)?)
        .with_connection_config(|connection| {
            connection.connection_timeout = Duration::from_secs(5);
            connection.max_command_attempts = 1;
        })
        .build()?;
    let answer = async {
        drop(client.init().await?);
        client.ping::<String>(None).await
    }
    .await;
    let _ = client.quit().await;
    answer
}

/// Fails the test if `future` hangs. It bounds a hang, not speed: a minute is far beyond
/// what any step here takes on a loaded machine.
async fn hang_guard<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), future)
        .await
        .expect("hang guard: no progress within 60 s")
}

#[tokio::test]
async fn valkey_stops_and_restarts_on_the_same_port() {
    let test = "dev-services valkey_control::valkey_stops_and_restarts_on_the_same_port";
    if urls_for_test(test).is_none() {
        return;
    }
    let control = match ValkeyControl::from_state() {
        Ok(control) => control,
        Err(error @ (Error::Unsupported { .. } | Error::NoState(_))) => {
            // Not through `eprintln!`, which the test harness would swallow.
            let _ = writeln!(std::io::stderr(), "skipping {test}: {error}");
            return;
        }
        Err(error) => panic!("reading the services state: {error}"),
    };
    assert!(control.is_running().expect("state"));
    assert_eq!(hang_guard(ping(control.url())).await.expect("PING"), "PONG");

    control.stop().await.expect("stop");
    assert!(!control.is_running().expect("state"));
    assert!(
        hang_guard(ping(control.url())).await.is_err(),
        "nothing may answer on the port while Valkey is stopped"
    );

    control.start().await.expect("start");
    assert!(control.is_running().expect("state"));
    // `start` returns once Valkey answers, so the first PING after it must succeed.
    let answer = hang_guard(ping(control.url())).await.expect("PING");
    assert_eq!(answer, "PONG");
}
