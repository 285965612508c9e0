//! `ValkeyControl` stops the local Valkey (clients lose it) and restarts it on the same port.

use std::io::Write;
use std::time::Duration;

use dev_services::{Error, ValkeyControl, urls_for_test};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// `PING` over raw RESP; `Err` when nothing listens.
async fn ping(url: &str) -> std::io::Result<String> {
    let address = url.trim_start_matches("redis://").trim_end_matches('/');
    let stream = tokio::net::TcpStream::connect(address).await?;
    let mut stream = BufReader::new(stream);
    stream.get_mut().write_all(b"PING\r\n").await?;
    let mut line = String::new();
    stream.read_line(&mut line).await?;
    Ok(line.trim().to_owned())
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
    assert_eq!(ping(control.url()).await.expect("PING"), "+PONG");

    control.stop().await.expect("stop");
    assert!(!control.is_running().expect("state"));
    assert!(
        ping(control.url()).await.is_err(),
        "nothing may answer on the port while Valkey is stopped"
    );

    control.start().await.expect("start");
    assert!(control.is_running().expect("state"));
    let answer = tokio::time::timeout(Duration::from_secs(5), ping(control.url()))
        .await
        .expect("PING in time")
        .expect("PING");
    assert_eq!(answer, "+PONG");
}
