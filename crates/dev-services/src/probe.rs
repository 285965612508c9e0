//! Readiness checks: Valkey `PING` through fred (the client the service uses), MongoDB
//! `ping` through the driver.

use std::future::Future;
use std::time::Duration;

use fred::error::ErrorKind;
use fred::prelude::{Builder, ClientLike, Config};
use fred::types::Value;
use mongodb::bson::doc;
use mongodb::options::ClientOptions;

use crate::{Error, Result};

/// Connects to a Valkey URL (`redis://[user:pass@]host:port[/db]`, or `rediss://` for TLS)
/// with a one-off fred client, sends `PING` and expects an answer within `timeout`. An
/// authentication refusal (`NOAUTH`, `WRONGPASS`) also counts as an answer: the server is
/// up, it only wants other credentials.
pub(crate) async fn valkey_ping(url: &str, timeout: Duration) -> Result<(), String> {
    // For messages: never the URL itself, which may hold a password.
    let address = host_port(url).ok_or_else(|| format!("cannot read host:port from `{url}`"))?;
    let config = Config::from_url(url).map_err(|error| format!("{address}: {error}"))?;
    // No reconnect policy: the first failed connection ends `init`.
    let client = Builder::from_config(config)
        .with_connection_config(|connection| {
            connection.connection_timeout = timeout;
            connection.internal_command_timeout = timeout;
            connection.max_command_attempts = 1;
        })
        .with_performance_config(|performance| performance.default_command_timeout = timeout)
        .build()
        .map_err(|error| format!("{address}: {error}"))?;
    let ping = async {
        // The handle drives the connection until `quit`; dropping it detaches the task.
        drop(client.init().await?);
        client.ping::<Value>(None).await
    };
    let result = match tokio::time::timeout(timeout, ping).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) if *error.kind() == ErrorKind::Auth => Ok(()),
        Ok(Err(error)) => Err(format!("{address}: {error}")),
        Err(_) => Err(format!("{address}: no answer within {timeout:?}")),
    };
    let _ = tokio::time::timeout(timeout, client.quit()).await;
    result
}

/// Runs `{ping: 1}` against the `admin` database of a MongoDB connection string.
pub(crate) async fn mongo_ping(uri: &str, timeout: Duration) -> Result<(), String> {
    let mut options = ClientOptions::parse(uri)
        .await
        .map_err(|error| format!("cannot parse `{uri}`: {error}"))?;
    options.server_selection_timeout = Some(timeout);
    options.connect_timeout = Some(timeout);
    options.app_name = Some("dev-services-probe".to_owned());
    let client = mongodb::Client::with_options(options).map_err(|error| error.to_string())?;
    let admin = client.database("admin");
    let ping = admin.run_command(doc! { "ping": 1 });
    let result = match tokio::time::timeout(timeout + Duration::from_secs(1), ping).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    };
    client.shutdown().await;
    result
}

/// Polls `check` until it succeeds, `alive` turns false, or `within` passes.
pub(crate) async fn wait_until<F, Fut>(
    service: &'static str,
    within: Duration,
    mut alive: impl FnMut() -> bool,
    mut check: F,
) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let start = tokio::time::Instant::now();
    let mut last = String::from("not tried");
    while start.elapsed() < within {
        if !alive() {
            return Err(Error::NotReady {
                service,
                waited: start.elapsed(),
                detail: format!("the process exited ({last})"),
            });
        }
        match check().await {
            Ok(()) => return Ok(()),
            Err(error) => last = error,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(Error::NotReady {
        service,
        waited: within,
        detail: last,
    })
}

/// `host:port` of a URL like `scheme://[userinfo@]host:port[/path][?query]`.
pub(crate) fn host_port(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    if host_port.contains(':') {
        Some(host_port.to_owned())
    } else {
        Some(format!("{host_port}:6379"))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::{host_port, valkey_ping};

    /// A loopback server that answers every read with `reply` (none: never answers).
    async fn fake_server(reply: Option<&'static [u8]>) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buffer = [0u8; 1024];
                    while let Ok(read) = socket.read(&mut buffer).await {
                        if read == 0 {
                            break;
                        }
                        if let Some(reply) = reply
                            && socket.write_all(reply).await.is_err()
                        {
                            break;
                        }
                    }
                });
            }
        });
        port
    }

    #[tokio::test]
    async fn valkey_ping_counts_an_auth_refusal_as_an_answer() {
        let port = fake_server(Some(b"-NOAUTH Authentication required.\r\n")).await;
        let url = format!("redis://127.0.0.1:{port}");
        assert_eq!(valkey_ping(&url, Duration::from_secs(5)).await, Ok(()));
    }

    #[tokio::test]
    async fn valkey_ping_fails_without_an_answer_and_never_shows_the_password() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let url = format!("redis://user:secret@127.0.0.1:{closed}");
        let error = valkey_ping(&url, Duration::from_secs(5))
            .await
            .expect_err("nothing listens");
        assert!(
            error.starts_with(&format!("127.0.0.1:{closed}: ")),
            "{error}"
        );
        assert!(!error.contains("secret"), "{error}");

        let silent = fake_server(None).await;
        let url = format!("redis://127.0.0.1:{silent}");
        let error = valkey_ping(&url, Duration::from_millis(300))
            .await
            .expect_err("a silent server is not ready");
        assert!(
            error.starts_with(&format!("127.0.0.1:{silent}: ")),
            "{error}"
        );
    }

    #[tokio::test]
    async fn valkey_ping_answers_on_the_real_valkey() {
        let Some(urls) = crate::urls_for_test("dev-services probe::valkey_ping_answers") else {
            return;
        };
        assert_eq!(
            valkey_ping(&urls.valkey_url, Duration::from_secs(5)).await,
            Ok(())
        );
    }

    #[test]
    fn host_port_of_urls() {
        assert_eq!(
            host_port("redis://127.0.0.1:7000").as_deref(),
            Some("127.0.0.1:7000")
        );
        assert_eq!(
            host_port("redis://user:secret@localhost:7000/0").as_deref(),
            Some("localhost:7000")
        );
        assert_eq!(host_port("redis://valkey").as_deref(), Some("valkey:6379"));
    }
}
