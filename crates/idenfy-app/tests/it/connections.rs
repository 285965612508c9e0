//! Connection hygiene of `idenfy_http::listener::serve`, over raw loopback sockets: slow request
//! heads are cut, idle connections are closed after the idle timeout (and not by the
//! header-read timeout), thousands of idle connections starve neither `/healthz` nor status
//! polls, the connection limit keeps the process clear of its open-file limit, and shutdown
//! drains. Outcomes and counts are asserted; elapsed times only from below (a loaded machine
//! makes everything slower, never faster), with generous hang guards that fail loudly.

use std::{
    future::Future,
    io::ErrorKind,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use idenfy_app::dev::memory_sessions;
use idenfy_client::Secret;
use idenfy_core::Environment;
use idenfy_http::{
    AppState,
    listener::{ConnectionLimits, raise_nofile_limit},
};
use idenfy_sim::{Sim, SimConfig, SimHandle};
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::{Semaphore, mpsc, oneshot},
    task::JoinSet,
};
use tracing_subscriber::{EnvFilter, layer::SubscriberExt};

use crate::support::{TOKEN, USER, capture_logs, send};

/// Timers of a few milliseconds' granularity may round; nothing else may close early.
const SLACK: Duration = Duration::from_millis(20);

/// The app on the in-memory adapters with idenfy-sim as iDenfy, served by
/// `listener::serve` on a loopback port, with one session to poll.
struct Server {
    addr: SocketAddr,
    /// A client without a connection pool: every request opens its own connection.
    http: reqwest::Client,
    /// A session of [`USER`], for status polls.
    row: String,
    stop: Option<oneshot::Sender<()>>,
    serving: tokio::task::JoinHandle<()>,
    _sim: SimHandle,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.serving.abort();
    }
}

impl Server {
    async fn start(limits: ConnectionLimits) -> Server {
        raise_nofile_limit();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let sim = Sim::start(SimConfig::default())
            .await
            .expect("start idenfy-sim");
        let live = Arc::new(
            memory_sessions(&sim, Environment::Live, Duration::from_millis(1)).expect("sessions"),
        );
        let state = AppState::new(live, idenfy_app::metrics::handle())
            .with_internal_token(Secret::new(TOKEN));
        let router = idenfy_http::router(state);
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = tokio::spawn(idenfy_http::listener::serve(
            listener,
            router,
            limits,
            async move {
                let _ = stopped.await;
            },
        ));
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("client");
        let (code, body) = send(
            http.post(format!("http://{addr}/internal/sessions"))
                .bearer_auth(TOKEN)
                .json(&json!({ "sigDigest": USER, "flow": "gov-id" })),
        )
        .await;
        assert_eq!(code, 201, "{body}");
        let row = body["idenfySessionId"]
            .as_str()
            .expect("idenfySessionId")
            .to_owned();
        Server {
            addr,
            http,
            row,
            stop: Some(stop),
            serving,
            _sim: sim,
        }
    }

    async fn healthz(&self) -> u16 {
        let request = self.http.get(format!("http://{}/healthz", self.addr));
        within("GET /healthz", Duration::from_secs(60), send(request))
            .await
            .0
    }

    async fn poll(&self) -> u16 {
        let request = self
            .http
            .get(format!(
                "http://{}/idenfy-sessions/{}/status",
                self.addr, self.row
            ))
            .header("X-Holo-User-Id", USER);
        within("a status poll", Duration::from_secs(60), send(request))
            .await
            .0
    }

    /// Resolves the shutdown future of `serve`.
    fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// `future`, or a panic naming `what` once `limit` has passed: a hang guard, not a bound.
async fn within<T>(what: &str, limit: Duration, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, future).await {
        Ok(value) => value,
        Err(_) => panic!("hang guard: {what} did not happen within {limit:?}"),
    }
}

/// How a connection the client left alone ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The server closed it (FIN).
    Eof,
    /// The server closed it with unread data (RST).
    Reset,
    /// The server sent something on a connection that asked for nothing.
    Data,
    Error(ErrorKind),
}

impl End {
    fn closed_by_server(self) -> bool {
        matches!(self, End::Eof | End::Reset)
    }
}

/// Waits until the server closes `stream` (nothing is sent on it).
async fn until_closed(mut stream: TcpStream) -> End {
    let mut buf = [0_u8; 256];
    match stream.read(&mut buf).await {
        Ok(0) => End::Eof,
        Ok(_) => End::Data,
        Err(error) if error.kind() == ErrorKind::ConnectionReset => End::Reset,
        Err(error) => End::Error(error.kind()),
    }
}

/// Reads one HTTP/1.1 response with a `Content-Length`: its head and body.
async fn read_response(stream: &mut TcpStream) -> (String, String) {
    let mut bytes = Vec::new();
    let mut buf = [0_u8; 4096];
    loop {
        if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
            let length = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .expect("a Content-Length");
            if bytes.len() >= end + 4 + length {
                let body = String::from_utf8_lossy(&bytes[end + 4..end + 4 + length]).into_owned();
                return (head, body);
            }
        }
        let read = stream.read(&mut buf).await.expect("read a response");
        assert!(read > 0, "connection closed mid-response: {bytes:?}");
        bytes.extend_from_slice(&buf[..read]);
    }
}

/// A connection with `POST /internal/sessions` in flight: head and half the body sent; the
/// rest is to be sent with [`finish_slow_create`].
async fn start_slow_create(addr: SocketAddr, user: &str) -> (TcpStream, Vec<u8>) {
    let body = json!({ "sigDigest": user, "flow": "gov-id" }).to_string();
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /internal/sessions HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let (first, rest) = body.as_bytes().split_at(body.len() / 2);
    stream
        .write_all(&[head.as_bytes(), first].concat())
        .await
        .expect("send the head and half the body");
    (stream, rest.to_vec())
}

/// Sends the rest of the body and returns the response.
async fn finish_slow_create(stream: &mut TcpStream, rest: &[u8]) -> (String, String) {
    stream.write_all(rest).await.expect("send the rest");
    within(
        "the response to the slow creation",
        Duration::from_secs(60),
        read_response(stream),
    )
    .await
}

/// How many idle connections of `wanted` this process can hold (each costs a descriptor on
/// either side), after raising its own open-file limit.
fn affordable_connections(wanted: usize) -> usize {
    let Some(soft) = raise_nofile_limit() else {
        return wanted;
    };
    let fit = usize::try_from(soft.saturating_sub(1_024) / 2).unwrap_or(usize::MAX);
    if fit < wanted {
        eprintln!(
            "open-file limit {soft}: testing with {fit} idle connections instead of {wanted}"
        );
    }
    wanted.min(fit)
}

/// Opens `n` connections (at most 128 connects at a time) that send nothing; returns once all
/// are connected, with one task per connection that ends, when the server closes it, with
/// how, how long after its connect, and when.
async fn open_idle(addr: SocketAddr, n: usize) -> JoinSet<(End, Duration, Instant)> {
    let connects = Arc::new(Semaphore::new(128));
    let (opened_tx, mut opened) = mpsc::unbounded_channel();
    let mut idle = JoinSet::new();
    for _ in 0..n {
        let connects = Arc::clone(&connects);
        let opened_tx = opened_tx.clone();
        idle.spawn(async move {
            let slot = connects.acquire_owned().await.expect("semaphore open");
            let stream = TcpStream::connect(addr).await.expect("connect");
            drop(slot);
            let connected = Instant::now();
            let _ = opened_tx.send(());
            let end = until_closed(stream).await;
            (end, connected.elapsed(), Instant::now())
        });
    }
    drop(opened_tx);
    within(
        "opening the idle connections",
        Duration::from_secs(120),
        async {
            for _ in 0..n {
                opened.recv().await.expect("a connection opened");
            }
        },
    )
    .await;
    idle
}

#[tokio::test]
async fn a_request_head_sent_a_line_a_second_is_cut_after_the_header_read_timeout() {
    let header_read_timeout = Duration::from_secs(1);
    let server = Server::start(ConnectionLimits {
        header_read_timeout,
        idle_timeout: Duration::from_secs(600),
        ..ConnectionLimits::default()
    })
    .await;

    let stream = TcpStream::connect(server.addr).await.expect("connect");
    let started = Instant::now();
    let (mut read, mut write) = stream.into_split();
    let reader = tokio::spawn(async move {
        let mut received = Vec::new();
        let mut buf = [0_u8; 1024];
        loop {
            match read.read(&mut buf).await {
                Ok(0) => return (End::Eof, received),
                Ok(n) => received.extend_from_slice(&buf[..n]),
                Err(error) if error.kind() == ErrorKind::ConnectionReset => {
                    return (End::Reset, received);
                }
                Err(error) => return (End::Error(error.kind()), received),
            }
        }
    });
    const LINES: usize = 60;
    let mut sent = 0;
    let mut line = b"GET /healthz HTTP/1.1\r\n".to_vec();
    while sent < LINES && !reader.is_finished() {
        if write.write_all(&line).await.is_err() {
            break;
        }
        sent += 1;
        line = format!("X-Slow-{sent}: {sent}\r\n").into_bytes();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (end, received) = within("the server's disconnect", Duration::from_secs(60), reader)
        .await
        .expect("reader task");
    let cut_after = started.elapsed();

    assert!(
        sent < LINES,
        "the server read a {LINES}-line head at a line a second without cutting it"
    );
    assert!(end.closed_by_server(), "{end:?}");
    let received = String::from_utf8_lossy(&received);
    assert!(
        !received.contains(" 200 "),
        "an unfinished head was answered: {received}"
    );
    assert!(
        cut_after + SLACK >= header_read_timeout,
        "cut after {cut_after:?}, before the {header_read_timeout:?} header-read timeout"
    );
    assert_eq!(server.healthz().await, 200, "the server still answers");
}

#[tokio::test]
async fn a_kept_alive_connection_is_closed_by_the_idle_timeout_not_the_header_read_timeout() {
    let header_read_timeout = Duration::from_secs(1);
    let idle_timeout = Duration::from_secs(8);
    let server = Server::start(ConnectionLimits {
        header_read_timeout,
        idle_timeout,
        ..ConnectionLimits::default()
    })
    .await;

    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let request = b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n";
    stream.write_all(request).await.expect("first request");
    let (head, _) = read_response(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    // An idle gap longer than the header-read timeout: the connection is still usable.
    tokio::time::sleep(header_read_timeout * 2).await;
    stream.write_all(request).await.expect("second request");
    let (head, _) = within(
        "the second response",
        Duration::from_secs(60),
        read_response(&mut stream),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let answered = Instant::now();

    let end = within(
        "the idle connection's close",
        Duration::from_secs(120),
        until_closed(stream),
    )
    .await;
    let idle_for = answered.elapsed();
    assert!(end.closed_by_server(), "{end:?}");
    assert!(
        idle_for + SLACK >= idle_timeout,
        "closed after {idle_for:?} idle, before the {idle_timeout:?} idle timeout"
    );
}

#[tokio::test]
async fn two_thousand_idle_connections_leave_health_and_polls_answering_until_the_idle_timeout() {
    let n = affordable_connections(2_000);
    let idle_timeout = Duration::from_secs(10);
    let server = Server::start(ConnectionLimits {
        idle_timeout,
        header_read_timeout: Duration::from_secs(60),
        ..ConnectionLimits::default()
    })
    .await;

    let idle = open_idle(server.addr, n).await;
    for _ in 0..3 {
        assert_eq!(server.healthz().await, 200);
        assert_eq!(server.poll().await, 200);
    }
    let answered = Instant::now();

    let ends = within(
        "the server closing the idle connections",
        Duration::from_secs(180),
        idle.join_all(),
    )
    .await;
    assert_eq!(ends.len(), n);
    let not_closed: Vec<End> = ends
        .iter()
        .map(|(end, ..)| *end)
        .filter(|end| !end.closed_by_server())
        .collect();
    assert!(
        not_closed.is_empty(),
        "{} of {n} idle connections ended otherwise than closed by the server: {:?}",
        not_closed.len(),
        &not_closed[..not_closed.len().min(10)]
    );
    let early = ends
        .iter()
        .filter(|(_, open_for, _)| *open_for + SLACK < idle_timeout)
        .count();
    assert_eq!(early, 0, "closed before the {idle_timeout:?} idle timeout");
    let open_while_answering = ends.iter().filter(|(.., at)| *at > answered).count();
    eprintln!(
        "{open_while_answering} of {n} idle connections were open while /healthz and polls answered"
    );
    assert!(
        open_while_answering > 0,
        "no idle connection was still open when /healthz and the polls answered"
    );
}

// current_thread: the server's tasks run on this thread, so the thread-local subscriber
// sees their logs.
#[tokio::test(flavor = "current_thread")]
async fn at_a_small_connection_limit_health_answers_and_accept_never_fails() {
    let capture = capture_logs(|logs| {
        tracing_subscriber::registry()
            .with(EnvFilter::new("idenfy_http::listener=trace"))
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(logs)
                    .with_ansi(false),
            )
    });

    let idle_timeout = Duration::from_secs(2);
    let server = Server::start(ConnectionLimits {
        max_connections: 50,
        idle_timeout,
        header_read_timeout: Duration::from_secs(60),
        ..ConnectionLimits::default()
    })
    .await;
    let idle = open_idle(server.addr, 200).await;
    assert_eq!(server.healthz().await, 200);
    assert_eq!(server.poll().await, 200);

    let ends = within(
        "the server closing the idle connections",
        Duration::from_secs(180),
        idle.join_all(),
    )
    .await;
    let closed = ends
        .iter()
        .filter(|(end, ..)| end.closed_by_server())
        .count();
    assert_eq!(
        closed,
        200,
        "{:?}",
        ends.iter().map(|(end, ..)| end).collect::<Vec<_>>()
    );
    assert_eq!(server.healthz().await, 200);

    let text = capture.logs.text();
    assert!(
        text.contains("connection limit reached"),
        "the limit of 50 was never reached with 200 connections:\n{text}"
    );
    for failure in [
        "accepting connections fails",
        "Too many open files",
        "os error 24",
    ] {
        assert!(!text.contains(failure), "{failure}:\n{text}");
    }
}

#[tokio::test]
async fn at_the_limit_idle_connections_make_room_and_a_request_in_flight_is_never_cut() {
    let server = Server::start(ConnectionLimits {
        max_connections: 50,
        idle_timeout: Duration::from_secs(600),
        header_read_timeout: Duration::from_secs(600),
        ..ConnectionLimits::default()
    })
    .await;
    // First in the backlog, so it gets a slot; its request stays in flight throughout.
    let (mut busy, rest) = start_slow_create(server.addr, "busy-user").await;

    let idle = open_idle(server.addr, 60).await;
    let closed = Arc::new(AtomicUsize::new(0));
    let mut watched = JoinSet::new();
    let mut idle = idle;
    {
        let closed = Arc::clone(&closed);
        watched.spawn(async move {
            let mut ends = Vec::new();
            while let Some(end) = idle.join_next().await {
                let end = end.expect("idle connection task");
                if end.0.closed_by_server() {
                    closed.fetch_add(1, Ordering::SeqCst);
                }
                ends.push(end.0);
            }
            ends
        });
    }

    // Neither timeout can free a slot for 10 minutes: only making room can let it in.
    assert_eq!(server.healthz().await, 200);
    // The 10 idle connections queued before it were accepted first.
    within(
        "idle connections making room",
        Duration::from_secs(60),
        async {
            while closed.load(Ordering::SeqCst) < 11 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        },
    )
    .await;

    let (head, body) = finish_slow_create(&mut busy, &rest).await;
    assert!(head.starts_with("HTTP/1.1 201"), "{head}\n{body}");
    watched.abort_all();
}

#[tokio::test]
async fn shutdown_closes_idle_connections_finishes_requests_in_flight_and_returns() {
    let mut server = Server::start(ConnectionLimits {
        idle_timeout: Duration::from_secs(600),
        header_read_timeout: Duration::from_secs(600),
        drain_timeout: Duration::from_secs(60),
        ..ConnectionLimits::default()
    })
    .await;
    let (mut busy, rest) = start_slow_create(server.addr, "draining-user").await;
    let untouched = TcpStream::connect(server.addr).await.expect("connect");
    let mut kept_alive = TcpStream::connect(server.addr).await.expect("connect");
    kept_alive
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .expect("request");
    let (head, _) = read_response(&mut kept_alive).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // Let the server read the slow creation's head (it was sent before the request above).
    tokio::time::sleep(Duration::from_millis(200)).await;

    server.begin_shutdown();
    for (what, stream) in [("untouched", untouched), ("kept alive", kept_alive)] {
        let end = within(
            "an idle connection's close on shutdown",
            Duration::from_secs(60),
            until_closed(stream),
        )
        .await;
        assert!(end.closed_by_server(), "{what}: {end:?}");
    }
    let refused = TcpStream::connect(server.addr).await;
    assert!(
        refused.is_err(),
        "a connection was accepted after shutdown began"
    );
    assert!(
        !server.serving.is_finished(),
        "a request is still in flight"
    );

    let (head, body) = finish_slow_create(&mut busy, &rest).await;
    assert!(head.starts_with("HTTP/1.1 201"), "{head}\n{body}");
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    assert_eq!(until_closed(busy).await, End::Eof);
    within(
        "serve returning after the drain",
        Duration::from_secs(60),
        &mut server.serving,
    )
    .await
    .expect("serve task");
}

// ---------------------------------------------------------------------------------------
// Errors in request heads: JSON like every other error
// ---------------------------------------------------------------------------------------

/// One response read off a raw connection.
#[derive(Debug)]
struct RawResponse {
    status: u16,
    /// Header names in lowercase, values trimmed.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Asserts this is our JSON error shape with `status`: `content-type:
    /// application/json`, a `content-length` that is the body's, `{"error": "<non-empty>"}`
    /// and an `x-request-id`; returns the message.
    fn assert_json_error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        assert_eq!(
            self.header("content-length"),
            Some(self.body.len().to_string().as_str()),
            "{self:?}"
        );
        assert!(
            self.header("x-request-id").is_some_and(|id| !id.is_empty()),
            "{self:?}"
        );
        let json: serde_json::Value = serde_json::from_slice(&self.body).expect("a JSON body");
        let object = json.as_object().expect("a JSON object");
        assert_eq!(
            object.keys().collect::<Vec<_>>(),
            ["error"],
            "exactly {{\"error\": ...}}: {json}"
        );
        let message = json["error"].as_str().expect("a string").to_owned();
        assert!(!message.is_empty());
        message
    }
}

/// Sends `request` (any bytes) on a new connection and reads every response until the
/// server closes it. `heads` lists, per response, whether it answers a HEAD request (no
/// body whatever its `content-length`). A write the server cut short (it answered and
/// closed before reading everything) is not an error.
async fn raw_exchange(addr: SocketAddr, request: &[u8], heads: &[bool]) -> (Vec<RawResponse>, End) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let _ = stream.write_all(request).await;
    within("the server's answers", Duration::from_secs(60), async {
        let mut bytes = Vec::new();
        let mut buf = [0_u8; 8192];
        let end = loop {
            match stream.read(&mut buf).await {
                Ok(0) => break End::Eof,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
                Err(error) if error.kind() == ErrorKind::ConnectionReset => break End::Reset,
                Err(error) => break End::Error(error.kind()),
            }
        };
        (split_responses(&bytes, heads), end)
    })
    .await
}

/// `bytes` as a sequence of responses framed by `content-length`.
fn split_responses(mut bytes: &[u8], heads: &[bool]) -> Vec<RawResponse> {
    let mut responses = Vec::new();
    while !bytes.is_empty() {
        let end = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("a complete head in {:?}", String::from_utf8_lossy(bytes)));
        let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
        let mut lines = head.lines();
        let status_line = lines.next().expect("a status line");
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("a status in {status_line:?}"));
        let headers: Vec<(String, String)> = lines
            .map(|line| {
                let (name, value) = line.split_once(':').expect("a header line");
                (name.to_ascii_lowercase(), value.trim().to_owned())
            })
            .collect();
        bytes = &bytes[end + 4..];
        if (100..200).contains(&status) {
            continue;
        }
        let length = if heads.get(responses.len()).copied().unwrap_or(false) {
            0
        } else {
            headers
                .iter()
                .find(|(name, _)| name == "content-length")
                .and_then(|(_, value)| value.parse::<usize>().ok())
                .unwrap_or_else(|| panic!("a content-length in {head}"))
        };
        assert!(bytes.len() >= length, "a truncated body after {head}");
        responses.push(RawResponse {
            status,
            headers,
            body: bytes[..length].to_vec(),
        });
        bytes = &bytes[length..];
    }
    responses
}

/// Sends one bad request on a new connection: exactly one JSON answer with `status`, then
/// the server closes the connection. Returns the message.
async fn refused(addr: SocketAddr, request: &[u8], status: u16) -> String {
    let (responses, end) = raw_exchange(addr, request, &[]).await;
    assert_eq!(
        responses.len(),
        1,
        "one answer to {:?}: {responses:?}",
        String::from_utf8_lossy(&request[..request.len().min(80)])
    );
    assert!(end.closed_by_server(), "{end:?}");
    assert_eq!(
        responses[0].header("connection"),
        Some("close"),
        "{responses:?}"
    );
    responses[0].assert_json_error(status)
}

#[tokio::test]
async fn a_nul_or_other_invalid_byte_in_a_header_is_answered_400_json() {
    let server = Server::start(ConnectionLimits::default()).await;
    for request in [
        &b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Bad: a\0b\r\n\r\n"[..],
        b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Bad: a\x7fb\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: test\r\nX Bad: ab\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: test\r\n: no name\r\n\r\n",
    ] {
        refused(server.addr, request, 400).await;
    }
    assert_eq!(server.healthz().await, 200, "the server still answers");
}

#[tokio::test]
async fn a_malformed_request_line_is_answered_400_json() {
    let server = Server::start(ConnectionLimits::default()).await;
    for request in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET /healthz HTTP/1.1 extra\r\nHost: test\r\n\r\n",
        b"GET /a b HTTP/1.1\r\nHost: test\r\n\r\n",
        b"GET /healthz HTTP/9.9\r\nHost: test\r\n\r\n",
        b"G\x01T /healthz HTTP/1.1\r\nHost: test\r\n\r\n",
    ] {
        refused(server.addr, request, 400).await;
    }
}

#[tokio::test]
async fn a_bad_content_length_or_transfer_encoding_is_answered_400_json() {
    let server = Server::start(ConnectionLimits::default()).await;
    for request in [
        &b"POST /idenfy/webhook HTTP/1.1\r\nHost: test\r\nContent-Length: abc\r\n\r\n"[..],
        b"POST /idenfy/webhook HTTP/1.1\r\nHost: test\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"POST /idenfy/webhook HTTP/1.1\r\nHost: test\r\nContent-Length: -1\r\n\r\n",
        b"POST /idenfy/webhook HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"POST /idenfy/webhook HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
    ] {
        refused(server.addr, request, 400).await;
    }
}

#[tokio::test]
async fn an_oversized_request_head_is_answered_431_json() {
    let server = Server::start(ConnectionLimits::default()).await;
    // Larger than hyper's read buffer (400 to 500 KiB, as its reads round it).
    let mut big = b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Big: ".to_vec();
    big.resize(big.len() + 640 * 1024, b'a');
    big.extend_from_slice(b"\r\n\r\n");
    refused(server.addr, &big, 431).await;
    assert_eq!(server.healthz().await, 200, "the server still answers");
}

#[tokio::test]
async fn an_overlong_uri_is_answered_414_json() {
    let server = Server::start(ConnectionLimits::default()).await;
    let mut request = b"GET /".to_vec();
    request.resize(request.len() + 70_000, b'a');
    request.extend_from_slice(b" HTTP/1.1\r\nHost: test\r\n\r\n");
    refused(server.addr, &request, 414).await;
}

/// On a kept-alive connection the answers to the good requests come out whole, in order,
/// and only then the JSON answer to the bad head — pipelined, or one after the other.
#[tokio::test]
async fn a_bad_head_after_good_requests_on_one_connection_is_answered_json_after_them() {
    let server = Server::start(ConnectionLimits::default()).await;
    let bad = &b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Bad: a\0b\r\n\r\n"[..];
    // Pipelined: a GET, a HEAD (a content-length but no body), a POST that waits for
    // `100 Continue`, then the bad head.
    let pipelined = [
        &b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n"[..],
        b"HEAD /healthz HTTP/1.1\r\nHost: test\r\n\r\n",
        b"POST /idenfy/webhook HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\n\
          Content-Length: 2\r\n\r\n{}",
        bad,
    ]
    .concat();
    let (responses, end) = raw_exchange(server.addr, &pipelined, &[false, true, false]).await;
    assert_eq!(responses.len(), 4, "{responses:?}");
    assert_eq!(responses[0].status, 200);
    assert_eq!(responses[0].body, br#"{"status":"ok"}"#);
    assert_eq!(responses[1].status, 200);
    assert!(responses[1].body.is_empty());
    responses[2].assert_json_error(401);
    responses[3].assert_json_error(400);
    assert!(end.closed_by_server(), "{end:?}");

    // One after the other.
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    for _ in 0..2 {
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .expect("request");
        let (head, body) = within(
            "a health answer",
            Duration::from_secs(60),
            read_response(&mut stream),
        )
        .await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(body, r#"{"status":"ok"}"#);
    }
    stream.write_all(bad).await.expect("the bad head");
    let (head, body) = within(
        "the answer to the bad head",
        Duration::from_secs(60),
        read_response(&mut stream),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert!(json["error"].is_string(), "{json}");
    assert!(until_closed(stream).await.closed_by_server());
}

/// What the router refuses — unknown route, wrong method, bad path parameter, body over the
/// limit, unreadable chunked body — is JSON too, over a real socket.
#[tokio::test]
async fn router_rejections_are_json() {
    let server = Server::start(ConnectionLimits::default()).await;
    let cases: [(&[u8], u16); 6] = [
        (
            b"GET /no-such-route HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
            404,
        ),
        (
            b"DELETE /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
            405,
        ),
        (
            b"GET /internal/sessions HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
            405,
        ),
        (
            b"GET /idenfy-sessions/%FF%FE/status HTTP/1.1\r\nHost: test\r\n\
              X-Holo-User-Id: someone\r\nConnection: close\r\n\r\n",
            404,
        ),
        (
            b"POST /idenfy/webhook HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\
              Connection: close\r\n\r\nZZ\r\n",
            400,
        ),
        (
            b"GET /session-status/v2 HTTP/1.1\r\nHost: test\r\nX-Holo-User-Id: someone\r\n\
              Connection: close\r\n\r\n",
            400,
        ),
    ];
    for (request, status) in cases {
        let (responses, _) = raw_exchange(server.addr, request, &[]).await;
        assert_eq!(responses.len(), 1, "{responses:?}");
        responses[0].assert_json_error(status);
    }
    // A webhook body over its 1 MiB limit.
    let body = vec![b' '; (1 << 20) + 1];
    let mut request = format!(
        "POST /idenfy/webhook HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    let (responses, _) = raw_exchange(server.addr, &request, &[]).await;
    assert_eq!(responses.len(), 1, "{responses:?}");
    responses[0].assert_json_error(413);
    // A body declared over the limit and never sent is refused on its head alone (not held
    // until the route's deadline answers 503).
    for request in [
        &b"POST /idenfy/webhook HTTP/1.1\r\nHost: test\r\nContent-Length: 1048577\r\n\
           Content-Type: application/json\r\nConnection: close\r\n\r\n"[..],
        &b"POST /internal/sessions HTTP/1.1\r\nHost: test\r\nContent-Length: 2097153\r\n\
           Content-Type: application/json\r\nConnection: close\r\n\r\n"[..],
    ] {
        let (responses, _) = raw_exchange(server.addr, request, &[]).await;
        assert_eq!(responses.len(), 1, "{responses:?}");
        responses[0].assert_json_error(413);
    }
}
