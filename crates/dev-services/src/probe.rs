//! Readiness checks: Valkey `PING` over raw RESP, MongoDB `ping` through the driver.

use std::future::Future;
use std::time::Duration;

use mongodb::bson::doc;
use mongodb::options::ClientOptions;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::{Error, Result};

/// Sends `PING` to a Valkey URL (`redis://[user:pass@]host:port[/db]`) and expects a reply.
/// `-NOAUTH` also counts as an answer: the server is up, it only wants credentials.
pub(crate) async fn valkey_ping(url: &str, timeout: Duration) -> Result<(), String> {
    let address = host_port(url).ok_or_else(|| format!("cannot read host:port from `{url}`"))?;
    let ping = async {
        let stream = tokio::net::TcpStream::connect(&address).await?;
        let mut stream = BufReader::new(stream);
        stream.get_mut().write_all(b"PING\r\n").await?;
        let mut line = String::new();
        stream.read_line(&mut line).await?;
        std::io::Result::Ok(line)
    };
    match tokio::time::timeout(timeout, ping).await {
        Ok(Ok(line)) if line.starts_with("+PONG") || line.starts_with("-NOAUTH") => Ok(()),
        Ok(Ok(line)) => Err(format!("{address} answered `{}`", line.trim())),
        Ok(Err(error)) => Err(format!("{address}: {error}")),
        Err(_) => Err(format!("{address}: no answer within {timeout:?}")),
    }
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
    use super::host_port;

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
