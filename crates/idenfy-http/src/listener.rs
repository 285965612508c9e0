//! The HTTP listener: serves the router over HTTP/1.1 on hyper directly, with the connection
//! hygiene `axum::serve` lacks — a header-read timeout, an idle keep-alive timeout, a
//! connection limit below the open-file limit, accept errors that never end the server, and
//! a bounded graceful drain.
//!
//! # Timeouts
//!
//! hyper (1.x, `proto/h1/conn.rs`) arms its header-read timer whenever an HTTP/1 connection
//! starts waiting for a request head: right after accept and again as soon as a response has
//! been written, before the client has sent a byte of its next request. So hyper's timer alone
//! would also be the keep-alive idle timeout, with the same value. We give hyper a
//! per-connection timer (`HeadTimer`) whose sleep counts in two phases: while no byte of the
//! next request has arrived, it runs for the idle timeout; from the first byte on, for the
//! header-read timeout. Either way hyper then closes the connection. A request in flight is
//! never timed out here (the router's request timeouts own that).
//!
//! # The connection limit
//!
//! At most `max_connections` connections are open, and never more than the soft
//! `RLIMIT_NOFILE` minus [`FD_RESERVE`] descriptors (the store, Valkey, the journal and the
//! iDenfy client need theirs). At the limit the server stops accepting: new connections wait
//! in the kernel's listen backlog (the client sees a slow connect, not an error) and are
//! accepted as slots free. While it waits, it asks the connections that have been idle for a
//! second (no request in flight) to close — the cheapest slots to give back; a client that
//! reuses such a connection reconnects. Connections serving a request are never cut.
//!
//! # Error answers hyper writes itself
//!
//! A request head hyper cannot parse — a NUL or other invalid byte in a header, a malformed
//! request line, a bad `Content-Length` or `Transfer-Encoding`, a head larger than its read
//! buffer (431) or a URI over 64 KiB (414) — never reaches the router: hyper answers it
//! itself (`proto/h1/role.rs`, `on_error`) with an EMPTY response, `HTTP/1.1 <status>`,
//! `connection: close`, `content-length: 0` and `date`, then closes the connection. hyper has
//! no hook to change that answer, so the connection's socket wrapper (`Counted`) replaces it
//! on its way out with `{"error": "..."}`, `content-type: application/json`, a matching
//! `content-length`, `connection: close` and an `x-request-id`, like every other error.
//!
//! To know hyper's answer from ours, the wrapper follows the framing of the responses it
//! writes (head, then a `content-length` or chunked body; none after `HEAD`, 1xx, 204 and
//! 304), and the service records every request it is handed. A final response head that
//! starts when every request handed to the service has had its response is hyper's own:
//! hyper dispatches one request at a time, and answers a parse error only once the previous
//! response is complete (`Writing::Init`). The head must also have exactly the shape above
//! (the router's responses all carry an `x-request-id`). Anything the wrapper cannot follow
//! — an unknown framing, a body until close, an upgrade — makes it step aside for the rest of
//! the connection, writing every byte as given: it fails open, to hyper's empty answer.
//!
//! Validating request heads before hyper instead (raising its buffer limit and enforcing our
//! own) was rejected: it means re-implementing hyper's whole head validation (httparse's
//! rules, `Content-Length`/`Transfer-Encoding` checks, URI and header-count limits) and the
//! request framing of keep-alive and pipelined connections, where any divergence either
//! refuses requests hyper accepts or lets hyper's empty answer through anyway.

use std::{
    collections::VecDeque,
    future::Future,
    io,
    pin::{Pin, pin},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll, ready},
    time::{Duration, Instant},
};

use axum::{
    Router,
    http::{Method, StatusCode},
};
use hyper::{
    body::Incoming,
    rt::{Sleep, Timer},
    server::conn::http1,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{Semaphore, watch},
};
use tower::ServiceExt;

/// File descriptors kept free of client connections for the store, Valkey, the mint journal,
/// the iDenfy client and the process itself.
pub const FD_RESERVE: u64 = 256;

/// Longest and shortest pause after an accept error that is not about one connection (out
/// of file descriptors, buffers or memory).
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(1));
/// How long a connection must have been idle before the limit asks it to close, and how
/// often the limit asks again while it holds.
const EVICT_AFTER_IDLE: Duration = Duration::from_secs(1);
/// How long closing the remaining connections may take once the drain timeout has passed.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// At most one warning per this interval for a condition that persists.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// Largest `max_connections` honoured (far above any open-file limit in practice).
const MAX_CONNECTIONS: usize = 1 << 24;

/// Limits on the server's connections, applied by [`serve`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Longest time from the first byte of a request to the end of its head (default 10 s).
    /// A slower client is disconnected.
    pub header_read_timeout: Duration,
    /// Longest time a connection may stay open with no request in flight and no byte of a
    /// next request received (default 30 s): from accept, and after each response.
    pub idle_timeout: Duration,
    /// Most connections open at once (default 10,000); lowered at start to the soft
    /// `RLIMIT_NOFILE` minus [`FD_RESERVE`].
    pub max_connections: usize,
    /// On shutdown, how long in-flight requests may take to finish (default 20 s); then the
    /// remaining connections are closed.
    pub drain_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            drain_timeout: Duration::from_secs(20),
        }
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (logging the old and new values at
/// INFO) and returns the soft limit now in force; `None` when it is unlimited or unknown.
/// A refusal is logged as a warning and leaves the limit as it was.
pub fn raise_nofile_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let old = getrlimit(Resource::Nofile);
        if old.current == old.maximum {
            tracing::debug!(soft = ?old.current, "open-file limit already at the hard limit");
            return old.current;
        }
        let raised = Rlimit {
            current: old.maximum,
            maximum: old.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => {
                let new = getrlimit(Resource::Nofile).current;
                tracing::info!(
                    old = %show_limit(old.current),
                    new = %show_limit(new),
                    "raised the open-file limit (RLIMIT_NOFILE) to the hard limit"
                );
                new
            }
            Err(error) => {
                tracing::warn!(
                    %error,
                    soft = %show_limit(old.current),
                    hard = %show_limit(old.maximum),
                    "cannot raise the open-file limit (RLIMIT_NOFILE); keeping the soft limit"
                );
                old.current
            }
        }
    }
    #[cfg(not(unix))]
    {
        None
    }
}

#[cfg(unix)]
fn show_limit(limit: Option<u64>) -> String {
    limit.map_or_else(|| "unlimited".to_owned(), |n| n.to_string())
}

/// The soft `RLIMIT_NOFILE` in force; `None` when unlimited or unknown.
fn soft_nofile_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        rustix::process::getrlimit(rustix::process::Resource::Nofile).current
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// `requested`, lowered so that client connections leave [`FD_RESERVE`] descriptors of the
/// soft open-file limit free (half of it when the limit is tiny); at least 1.
fn effective_max_connections(requested: usize, soft_nofile: Option<u64>) -> usize {
    let requested = requested.clamp(1, MAX_CONNECTIONS);
    let Some(soft) = soft_nofile else {
        return requested;
    };
    let available = if soft > 2 * FD_RESERVE {
        soft - FD_RESERVE
    } else {
        soft / 2
    };
    requested.min(usize::try_from(available).unwrap_or(usize::MAX).max(1))
}

/// Serves `router` on `listener` (HTTP/1.1) within `limits` until `shutdown` resolves, then
/// stops accepting, closes idle connections, lets in-flight requests finish for up to
/// `limits.drain_timeout`, closes what remains and returns.
///
/// Accept errors never end it: a failed accept is retried — after a short, growing pause and
/// one log line per burst when it is about the process (out of file descriptors or memory)
/// rather than one connection. Dropping the returned future closes every connection at once.
pub async fn serve<F>(listener: TcpListener, router: Router, limits: ConnectionLimits, shutdown: F)
where
    F: Future<Output = ()>,
{
    let soft_nofile = soft_nofile_limit();
    let max = effective_max_connections(limits.max_connections, soft_nofile);
    if max < limits.max_connections {
        tracing::warn!(
            requested = limits.max_connections,
            max_connections = max,
            soft_nofile_limit = soft_nofile,
            reserve = FD_RESERVE,
            "the connection limit is lowered to fit the open-file limit (RLIMIT_NOFILE)"
        );
    }
    tracing::info!(
        max_connections = max,
        header_read_timeout_ms = millis(limits.header_read_timeout),
        idle_timeout_ms = millis(limits.idle_timeout),
        "accepting HTTP connections"
    );

    let slots = Arc::new(Semaphore::new(max));
    let all_slots = u32::try_from(max).unwrap_or(u32::MAX);
    let (phase, _) = watch::channel(Phase::Serving);
    let (evict, _) = watch::channel(0_u64);
    let shared = Arc::new(Shared {
        router,
        limits,
        epoch: Instant::now(),
    });
    let mut shutdown = pin!(shutdown);
    let mut at_limit = Throttle::default();
    let mut accept_failures = Throttle::default();
    let mut backoff = ACCEPT_BACKOFF.0;

    'accept: loop {
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if let Some(since_last) = at_limit.hit() {
                    tracing::warn!(
                        max_connections = max,
                        times_since_last_warning = since_last,
                        "connection limit reached: new connections wait in the listen backlog; \
                         asking idle connections to close"
                    );
                }
                loop {
                    evict.send_modify(|round| *round += 1);
                    tokio::select! {
                        biased;
                        () = &mut shutdown => break 'accept,
                        slot = Arc::clone(&slots).acquire_owned() => match slot {
                            Ok(slot) => break slot,
                            Err(_) => break 'accept,
                        },
                        () = tokio::time::sleep(EVICT_AFTER_IDLE) => {}
                    }
                }
            }
        };
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => {
                backoff = ACCEPT_BACKOFF.0;
                if let Some(failures) = accept_failures.end() {
                    tracing::info!(failures, "accepting connections again");
                }
                let connection = Connection {
                    shared: Arc::clone(&shared),
                    phase: phase.subscribe(),
                    evict: evict.subscribe(),
                };
                tokio::spawn(async move {
                    connection.run(stream).await;
                    drop(slot);
                });
            }
            Err(error) if is_about_one_connection(&error) => {
                tracing::debug!(%error, "a connection failed before it was accepted");
            }
            Err(error) => {
                if let Some(since_last) = accept_failures.hit() {
                    tracing::error!(
                        %error,
                        failures_since_last_log = since_last,
                        open_connections = max - slots.available_permits(),
                        "accepting connections fails; retrying with back-off and asking idle \
                         connections to close"
                    );
                }
                drop(slot);
                evict.send_modify(|round| *round += 1);
                tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
            }
        }
    }

    drop(listener);
    let open = max - slots.available_permits();
    tracing::info!(
        open_connections = open,
        drain_timeout_ms = millis(limits.drain_timeout),
        "stopped accepting; closing idle connections and letting in-flight requests finish"
    );
    phase.send_replace(Phase::Draining);
    if tokio::time::timeout(limits.drain_timeout, slots.acquire_many(all_slots))
        .await
        .is_ok()
    {
        tracing::info!("every connection closed");
        return;
    }
    tracing::warn!(
        open_connections = max - slots.available_permits(),
        "drain timeout passed; closing the remaining connections"
    );
    phase.send_replace(Phase::Closing);
    let _ = tokio::time::timeout(CLOSE_GRACE, slots.acquire_many(all_slots)).await;
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Errors of `accept` that concern one connection (it was reset or aborted before it was
/// accepted): the next accept goes ahead at once.
fn is_about_one_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// Logs a persisting condition once when it starts, then at most once per [`LOG_EVERY`].
#[derive(Debug, Default)]
struct Throttle {
    last_logged: Option<Instant>,
    /// Occurrences since the condition started (`end`) or since the last log line (`hit`).
    count: u64,
    total: u64,
}

impl Throttle {
    /// One more occurrence; `Some(occurrences since the last log line)` when to log it.
    fn hit(&mut self) -> Option<u64> {
        self.count += 1;
        self.total += 1;
        let due = self
            .last_logged
            .is_none_or(|last| last.elapsed() >= LOG_EVERY);
        due.then(|| {
            self.last_logged = Some(Instant::now());
            std::mem::take(&mut self.count)
        })
    }

    /// The condition is over: `Some(occurrences)` if it had happened.
    fn end(&mut self) -> Option<u64> {
        let total = std::mem::take(&mut self.total);
        self.count = 0;
        self.last_logged = None;
        (total > 0).then_some(total)
    }
}

/// What the server asks of its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Serving,
    /// Finish what is in flight, then close; close idle connections now.
    Draining,
    /// Close now.
    Closing,
}

#[derive(Debug)]
struct Shared {
    router: Router,
    limits: ConnectionLimits,
    /// Zero of [`Activity::last_active_ms`].
    epoch: Instant,
}

/// What a connection has been doing, shared by its socket, its timer and its service.
#[derive(Debug)]
struct Activity {
    epoch: Instant,
    bytes_read: AtomicU64,
    requests: AtomicU64,
    in_flight: AtomicUsize,
    /// Milliseconds after `epoch` of the last byte read or request started or answered.
    last_active_ms: AtomicU64,
    /// Requests handed to the service whose response head has not been written yet.
    exchanges: Mutex<VecDeque<Exchange>>,
}

impl Activity {
    fn new(epoch: Instant) -> Self {
        let activity = Self {
            epoch,
            bytes_read: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            last_active_ms: AtomicU64::new(0),
            exchanges: Mutex::new(VecDeque::new()),
        };
        activity.touch();
        activity
    }

    /// The requests handed to the service whose response head has not been written yet.
    fn exchanges(&self) -> std::sync::MutexGuard<'_, VecDeque<Exchange>> {
        // Poisoned only if a holder panicked; the queue is still consistent.
        self.exchanges
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn touch(&self) {
        self.last_active_ms
            .store(millis(self.epoch.elapsed()), Ordering::Relaxed);
    }

    fn bytes_read(&self) -> u64 {
        self.bytes_read.load(Ordering::Relaxed)
    }

    /// No byte received yet: nothing of a request can be lost by closing it.
    fn untouched(&self) -> bool {
        self.bytes_read() == 0 && self.requests.load(Ordering::Relaxed) == 0
    }

    /// No request in flight, and nothing happened for `quiet`.
    fn idle_for(&self, quiet: Duration) -> bool {
        let last = Duration::from_millis(self.last_active_ms.load(Ordering::Relaxed));
        self.in_flight.load(Ordering::Relaxed) == 0
            && self.epoch.elapsed().saturating_sub(last) >= quiet
    }
}

/// Counts a request in flight while alive.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> Self {
        activity.requests.fetch_add(1, Ordering::Relaxed);
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        activity.touch();
        Self(Arc::clone(activity))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One accepted connection's task.
struct Connection {
    shared: Arc<Shared>,
    phase: watch::Receiver<Phase>,
    evict: watch::Receiver<u64>,
}

impl Connection {
    async fn run(mut self, stream: TcpStream) {
        let limits = self.shared.limits;
        let activity = Arc::new(Activity::new(self.shared.epoch));
        let io = TokioIo::new(Counted::new(stream, Arc::clone(&activity)));
        let service = {
            let activity = Arc::clone(&activity);
            let router = self.shared.router.clone();
            hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                let in_flight = InFlight::start(&activity);
                // Before hyper can write any byte of the response.
                activity
                    .exchanges()
                    .push_back(Exchange::of(request.method()));
                let response = router.clone().oneshot(request);
                async move {
                    let response = response.await;
                    drop(in_flight);
                    response
                }
            })
        };
        let mut builder = http1::Builder::new();
        builder
            .timer(HeadTimer {
                activity: Arc::clone(&activity),
                idle: limits.idle_timeout,
            })
            .header_read_timeout(limits.header_read_timeout);
        let mut connection = pin!(builder.serve_connection(io, service));
        // `graceful_shutdown` asked: the connection closes once its current exchange is done.
        let mut winding_down = false;

        loop {
            tokio::select! {
                biased;
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        log_connection_end(&error);
                    }
                    return;
                }
                changed = self.phase.changed() => {
                    let phase = match changed {
                        Ok(()) => *self.phase.borrow_and_update(),
                        // The server future was dropped.
                        Err(_) => Phase::Closing,
                    };
                    match phase {
                        Phase::Serving => {}
                        Phase::Closing => return,
                        Phase::Draining => {
                            if activity.untouched() {
                                return;
                            }
                            if !winding_down {
                                winding_down = true;
                                connection.as_mut().graceful_shutdown();
                            }
                        }
                    }
                }
                Ok(()) = self.evict.changed(), if !winding_down => {
                    if activity.idle_for(EVICT_AFTER_IDLE) {
                        if activity.untouched() {
                            tracing::trace!("idle connection closed to make room");
                            return;
                        }
                        winding_down = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
        }
    }
}

fn log_connection_end(error: &hyper::Error) {
    if error.is_timeout() {
        tracing::trace!("connection closed: idle or header-read timeout");
    } else if error.is_incomplete_message() || error.is_closed() || error.is_canceled() {
        tracing::trace!(%error, "connection ended");
    } else {
        tracing::debug!(%error, "connection ended with an error");
    }
}

/// The socket of a connection: counts what it reads into its [`Activity`], and replaces
/// hyper's empty answer to an unparsable request head with a JSON one (see the module
/// documentation).
struct Counted<S = TcpStream> {
    stream: S,
    activity: Arc<Activity>,
    out: Outgoing,
}

impl<S> Counted<S> {
    fn new(stream: S, activity: Arc<Activity>) -> Self {
        Self {
            stream,
            activity,
            out: Outgoing::default(),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.stream).poll_read(cx, buf);
        let read = buf.filled().len().saturating_sub(before);
        if read > 0 {
            this.activity
                .bytes_read
                .fetch_add(u64::try_from(read).unwrap_or(u64::MAX), Ordering::Relaxed);
            this.activity.touch();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> Counted<S> {
    /// Writes what is pending (a held head given back, or the JSON answer) before anything
    /// else.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.out.sent < self.out.pending.len() {
            let n = ready!(
                Pin::new(&mut self.stream).poll_write(cx, &self.out.pending[self.out.sent..])
            )?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out.sent += n;
        }
        self.out.pending.clear();
        self.out.sent = 0;
        Poll::Ready(Ok(()))
    }

    fn write_slices(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        let total: usize = bufs.iter().map(|buf| buf.len()).sum();
        if total == 0 {
            return Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        }
        let forwardable = match &self.out.mode {
            Mode::Replaced => return Poll::Ready(Ok(total)),
            Mode::Holding(_) => return Poll::Ready(Ok(self.out.hold(bufs))),
            Mode::Following(Framing::Transparent) => total,
            Mode::Following(framing) => {
                let mut framing = framing.clone();
                let mut owed = self.activity.exchanges().clone();
                let mut forwardable = 0;
                for buf in bufs {
                    let followed = framing.follow(buf, &mut owed, true);
                    forwardable += followed;
                    if followed < buf.len() {
                        break;
                    }
                }
                forwardable
            }
        };
        if forwardable == 0 {
            // A response head nobody asked for starts here.
            self.out.mode = Mode::Holding(Vec::new());
            return Poll::Ready(Ok(self.out.hold(bufs)));
        }
        let written = if forwardable == total {
            ready!(Pin::new(&mut self.stream).poll_write_vectored(cx, bufs))?
        } else {
            let mut left = forwardable;
            let mut slices = Vec::with_capacity(bufs.len());
            for buf in bufs {
                if left == 0 {
                    break;
                }
                let take = buf.len().min(left);
                slices.push(io::IoSlice::new(&buf[..take]));
                left -= take;
            }
            ready!(Pin::new(&mut self.stream).poll_write_vectored(cx, &slices))?
        };
        if let Mode::Following(framing) = &mut self.out.mode {
            let mut owed = self.activity.exchanges();
            let mut left = written;
            for buf in bufs {
                if left == 0 {
                    break;
                }
                let take = buf.len().min(left);
                framing.follow(&buf[..take], &mut owed, false);
                left -= take;
            }
        }
        Poll::Ready(Ok(written))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().write_slices(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().write_slices(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        // hyper writes a head whole before it flushes: one still incomplete is not its
        // parse-error answer. Give it back as it is.
        this.out.give_back_held();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        this.out.give_back_held();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.stream).poll_shutdown(cx)
    }
}

/// A request handed to the service, as the framing of its response depends on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Exchange {
    /// `HEAD`: the response has no body, whatever its `content-length` says.
    head: bool,
    /// `CONNECT`: a 2xx response turns the connection into a tunnel.
    connect: bool,
}

impl Exchange {
    fn of(method: &Method) -> Self {
        Self {
            head: method == Method::HEAD,
            connect: method == Method::CONNECT,
        }
    }
}

/// Longest line of a response head or chunked body the wrapper follows; past it, it steps
/// aside.
const MAX_LINE: usize = 16 * 1024;
/// Longest head held back as a possible parse-error answer (hyper's are about 100 bytes).
const MAX_HELD: usize = 1024;

/// The write side of a connection, as [`Counted`] follows it.
#[derive(Debug, Default)]
struct Outgoing {
    mode: Mode,
    /// Bytes to write before any other: a held head given back, or the JSON answer.
    pending: Vec<u8>,
    /// How much of `pending` is written.
    sent: usize,
}

#[derive(Debug)]
enum Mode {
    /// Writing hyper's bytes as given, following their framing.
    Following(Framing),
    /// Holding back a response head that started with no request owed an answer: hyper's
    /// answer to a request head it could not parse, if it has that shape.
    Holding(Vec<u8>),
    /// hyper's answer was replaced; hyper writes nothing after it (the connection closes).
    Replaced,
}

impl Default for Mode {
    fn default() -> Self {
        Self::Following(Framing::default())
    }
}

impl Outgoing {
    /// Takes bytes of `bufs` into the held head, up to its end; returns how many.
    fn hold(&mut self, bufs: &[io::IoSlice<'_>]) -> usize {
        let Mode::Holding(held) = &mut self.mode else {
            return 0;
        };
        let mut taken = 0;
        for buf in bufs {
            for &byte in buf.iter() {
                held.push(byte);
                taken += 1;
                if held.ends_with(b"\r\n\r\n") {
                    self.settle_held();
                    return taken;
                }
                if held.len() >= MAX_HELD {
                    self.give_back_held();
                    return taken;
                }
            }
        }
        taken
    }

    /// The held head is complete: replace it if it is hyper's parse-error answer, else give
    /// it back.
    fn settle_held(&mut self) {
        let Mode::Holding(held) = &self.mode else {
            return;
        };
        match parse_error_answer(held) {
            Some((status, date)) => {
                let (answer, request_id) = json_answer(status, date);
                tracing::debug!(
                    status = status.as_u16(),
                    request_id,
                    "refused a request head that is not valid HTTP/1.1"
                );
                self.pending = answer;
                self.sent = 0;
                self.mode = Mode::Replaced;
            }
            None => self.give_back_held(),
        }
    }

    /// Writes a held head as it is, and steps aside for the rest of the connection.
    fn give_back_held(&mut self) {
        if let Mode::Holding(held) = &mut self.mode {
            let held = std::mem::take(held);
            self.pending.extend_from_slice(&held);
            self.mode = Mode::Following(Framing::Transparent);
        }
    }
}

/// Where the outgoing bytes are in the framing of hyper's responses.
#[derive(Clone, Debug)]
enum Framing {
    /// At or in a response head.
    Head(HeadState),
    /// In a `content-length` body: this many bytes left.
    Body(u64),
    /// In the size line of a chunk (bytes so far).
    ChunkSize(Vec<u8>),
    /// In a chunk: this many bytes left, its closing CRLF included.
    ChunkData(u64),
    /// In the trailer section after the last chunk (bytes of the current line so far).
    Trailers(Vec<u8>),
    /// Not followed any more: bytes go out as they are.
    Transparent,
}

impl Default for Framing {
    fn default() -> Self {
        Self::Head(HeadState::default())
    }
}

/// A response head being read.
#[derive(Clone, Debug, Default)]
struct HeadState {
    started: bool,
    line: Vec<u8>,
    status: Option<u16>,
    content_length: Option<u64>,
    chunked: bool,
    /// A `transfer-encoding` other than a final `chunked`: the body lasts until close.
    until_close: bool,
    /// Something the wrapper does not understand: step aside once the head ends.
    confused: bool,
}

/// Appends `data[*at..]` to `line` up to and including its `\n`; `Some(true)` when the line
/// is complete, `None` when it grew too long.
fn take_line(line: &mut Vec<u8>, data: &[u8], at: &mut usize) -> Option<bool> {
    let rest = &data[*at..];
    let (take, complete) = match rest.iter().position(|&b| b == b'\n') {
        Some(end) => (end + 1, true),
        None => (rest.len(), false),
    };
    line.extend_from_slice(&rest[..take]);
    *at += take;
    (line.len() <= MAX_LINE).then_some(complete)
}

/// `line` without its line ending.
fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

impl Framing {
    /// Follows `data` through the framing, taking a request off `owed` at each final
    /// response head. Returns how many bytes it followed: all of them, unless `stop` and a
    /// response head starts with no request owed an answer, where it stops. Without `stop`,
    /// such a head makes it step aside.
    fn follow(&mut self, data: &[u8], owed: &mut VecDeque<Exchange>, stop: bool) -> usize {
        let mut at = 0;
        while at < data.len() {
            match self {
                Self::Transparent => return data.len(),
                Self::Body(left) | Self::ChunkData(left) => {
                    let available = data.len() - at;
                    let take = usize::try_from(*left).map_or(available, |l| l.min(available));
                    *left -= take as u64;
                    at += take;
                    if *left == 0 {
                        *self = match self {
                            Self::Body(_) => Self::default(),
                            _ => Self::ChunkSize(Vec::new()),
                        };
                    }
                }
                Self::ChunkSize(line) => match take_line(line, data, &mut at) {
                    None => *self = Self::Transparent,
                    Some(false) => {}
                    Some(true) => {
                        let size = trim_eol(line)
                            .split(|&b| b == b';')
                            .next()
                            .and_then(|hex| std::str::from_utf8(hex).ok())
                            .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok());
                        *self = match size {
                            Some(0) => Self::Trailers(Vec::new()),
                            Some(size) => Self::ChunkData(size.saturating_add(2)),
                            None => Self::Transparent,
                        };
                    }
                },
                Self::Trailers(line) => match take_line(line, data, &mut at) {
                    None => *self = Self::Transparent,
                    Some(false) => {}
                    Some(true) if trim_eol(line).is_empty() => *self = Self::default(),
                    Some(true) => line.clear(),
                },
                Self::Head(head) => {
                    if !head.started {
                        if owed.is_empty() {
                            if stop {
                                return at;
                            }
                            *self = Self::Transparent;
                            continue;
                        }
                        head.started = true;
                    }
                    match take_line(&mut head.line, data, &mut at) {
                        None => *self = Self::Transparent,
                        Some(false) => {}
                        Some(true) => {
                            let line = std::mem::take(&mut head.line);
                            let line = trim_eol(&line);
                            if head.status.is_none() {
                                head.status = status_of(line);
                                head.confused |= head.status.is_none();
                            } else if line.is_empty() {
                                *self = match std::mem::take(head).after(owed) {
                                    Some(next) => next,
                                    None => Self::Transparent,
                                };
                            } else {
                                head.header(line);
                            }
                        }
                    }
                }
            }
        }
        data.len()
    }
}

impl HeadState {
    fn header(&mut self, line: &[u8]) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            self.confused = true;
            return;
        };
        let name = &line[..colon];
        let value = std::str::from_utf8(&line[colon + 1..]).map(str::trim);
        if name.eq_ignore_ascii_case(b"content-length") {
            match value.ok().and_then(|v| v.parse::<u64>().ok()) {
                Some(length) if self.content_length.is_none_or(|l| l == length) => {
                    self.content_length = Some(length);
                }
                _ => self.confused = true,
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            let last = value.ok().and_then(|v| v.rsplit(',').next()).map(str::trim);
            if last.is_some_and(|coding| coding.eq_ignore_ascii_case("chunked")) {
                self.chunked = true;
                self.until_close = false;
            } else {
                self.chunked = false;
                self.until_close = true;
            }
        }
    }

    /// What follows a complete head; `None` to step aside.
    fn after(self, owed: &mut VecDeque<Exchange>) -> Option<Framing> {
        let status = self.status?;
        if self.confused || status == 101 {
            return None;
        }
        if (100..200).contains(&status) {
            // 100 Continue and the like: the final response is still to come.
            return Some(Framing::default());
        }
        let exchange = owed.pop_front()?;
        if exchange.connect && (200..300).contains(&status) {
            return None;
        }
        if exchange.head || status == 204 || status == 304 {
            return Some(Framing::default());
        }
        if self.chunked {
            Some(Framing::ChunkSize(Vec::new()))
        } else if self.until_close {
            None
        } else {
            match self.content_length {
                Some(0) => Some(Framing::default()),
                Some(length) => Some(Framing::Body(length)),
                // Until close.
                None => None,
            }
        }
    }
}

/// The status of `HTTP/1.x NNN ...`.
fn status_of(line: &[u8]) -> Option<u16> {
    let rest = line
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| line.strip_prefix(b"HTTP/1.0 "))?;
    let code = rest.get(..3)?;
    if rest.len() > 3 && rest[3] != b' ' {
        return None;
    }
    std::str::from_utf8(code).ok()?.parse().ok()
}

/// The status and `date` of `head` when it has exactly the shape of hyper's answer to a
/// request head it could not parse: a 4xx status line, `connection: close`,
/// `content-length: 0`, `date`, and nothing else.
fn parse_error_answer(head: &[u8]) -> Option<(StatusCode, Option<&[u8]>)> {
    let head = head.strip_suffix(b"\r\n\r\n")?;
    let mut lines = head.split(|&b| b == b'\n').map(trim_eol);
    let status = StatusCode::from_u16(status_of(lines.next()?)?).ok()?;
    if !status.is_client_error() {
        return None;
    }
    let (mut empty_body, mut date) = (false, None);
    for line in lines {
        let colon = line.iter().position(|&b| b == b':')?;
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"content-length") && value == b"0" {
            empty_body = true;
        } else if name.eq_ignore_ascii_case(b"date") && date.is_none() {
            date = Some(value);
        } else if !(name.eq_ignore_ascii_case(b"connection")
            && value.eq_ignore_ascii_case(b"close"))
        {
            return None;
        }
    }
    empty_body.then_some((status, date))
}

/// Our answer in place of hyper's: `{"error": ...}` with the same status, and its request id.
fn json_answer(status: StatusCode, date: Option<&[u8]>) -> (Vec<u8>, String) {
    let message = match status {
        StatusCode::BAD_REQUEST => "Malformed request: the request line or a header is invalid",
        StatusCode::URI_TOO_LONG => "Request URI too long",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "Request header fields too large",
        other => other.canonical_reason().unwrap_or("Bad request"),
    };
    let body = serde_json::json!({ "error": message }).to_string();
    let request_id = uuid_request_id();
    let mut answer = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\nx-request-id: {request_id}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len(),
    )
    .into_bytes();
    if let Some(date) = date {
        answer.extend_from_slice(b"date: ");
        answer.extend_from_slice(date);
        answer.extend_from_slice(b"\r\n");
    }
    answer.extend_from_slice(b"\r\n");
    answer.extend_from_slice(body.as_bytes());
    (answer, request_id)
}

/// A new request id, as the router makes them.
fn uuid_request_id() -> String {
    use tower_http::request_id::{MakeRequestId, MakeRequestUuid};
    MakeRequestUuid
        .make_request_id(&axum::http::Request::new(()))
        .and_then(|id| id.header_value().to_str().ok().map(str::to_owned))
        .unwrap_or_default()
}

/// The timer hyper's header-read timeout runs on, for one connection. hyper uses it for that
/// timeout only (HTTP/1 server), arming it whenever it starts waiting for a request head; the
/// sleep it returns lasts the idle timeout until a byte arrives, then hyper's own deadline
/// (the header-read timeout) counted from that byte.
#[derive(Debug)]
struct HeadTimer {
    activity: Arc<Activity>,
    idle: Duration,
}

impl Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        Box::pin(HeadSleep {
            activity: Arc::clone(&self.activity),
            bytes_when_armed: self.activity.bytes_read(),
            head: duration,
            reading_head: false,
            sleep: TokioTimer::new().sleep(self.idle),
        })
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        self.sleep(deadline.saturating_duration_since(self.now()))
    }

    fn now(&self) -> Instant {
        TokioTimer::new().now()
    }
}

/// See [`HeadTimer`].
struct HeadSleep {
    activity: Arc<Activity>,
    bytes_when_armed: u64,
    /// The header-read timeout.
    head: Duration,
    /// A byte of the head has arrived: the deadline is `head` after it.
    reading_head: bool,
    sleep: Pin<Box<dyn Sleep>>,
}

impl Future for HeadSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        // hyper polls this right after each read that left the head incomplete.
        if !this.reading_head && this.activity.bytes_read() != this.bytes_when_armed {
            this.reading_head = true;
            let timer = TokioTimer::new();
            let deadline = timer.now() + this.head;
            timer.reset(&mut this.sleep, deadline);
        }
        this.sleep.as_mut().poll(cx)
    }
}

impl Sleep for HeadSleep {}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// hyper's answer to an unparsable head, as hyper 1 writes it.
    const HYPER_400: &[u8] = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\
        content-length: 0\r\ndate: Wed, 02 Dec 2026 08:32:40 GMT\r\n\r\n";
    const HYPER_431: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\n\
        connection: close\r\ncontent-length: 0\r\ndate: Wed, 02 Dec 2026 08:32:40 GMT\r\n\r\n";
    const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
        x-request-id: a\r\ncontent-length: 15\r\ndate: Wed, 02 Dec 2026 08:32:40 GMT\r\n\r\n\
        {\"status\":\"ok\"}";

    /// How the bytes are handed to the wrapper.
    #[derive(Clone, Copy, Debug)]
    enum Writes {
        /// One `write_all` per piece.
        Each,
        /// All pieces in vectored writes.
        Vectored,
    }

    /// Writes `pieces` through a [`Counted`] whose service was handed requests of
    /// `methods`, over a pipe of `capacity` bytes (small ones force partial writes), then
    /// flushes and shuts it down; returns what came out.
    async fn through(
        methods: &[Method],
        pieces: &[&[u8]],
        writes: Writes,
        capacity: usize,
    ) -> Vec<u8> {
        let (near, mut far) = tokio::io::duplex(capacity);
        let reader = tokio::spawn(async move {
            let mut out = Vec::new();
            far.read_to_end(&mut out).await.expect("read the pipe");
            out
        });
        let activity = Arc::new(Activity::new(Instant::now()));
        for method in methods {
            activity.exchanges().push_back(Exchange::of(method));
        }
        let mut counted = Counted::new(near, activity);
        match writes {
            Writes::Each => {
                for piece in pieces {
                    counted.write_all(piece).await.expect("write");
                }
            }
            Writes::Vectored => {
                let mut rest: Vec<&[u8]> = pieces.to_vec();
                while rest.iter().any(|piece| !piece.is_empty()) {
                    let slices: Vec<io::IoSlice<'_>> =
                        rest.iter().map(|piece| io::IoSlice::new(piece)).collect();
                    let mut written = counted.write_vectored(&slices).await.expect("write");
                    assert!(written > 0, "a write made no progress");
                    for piece in &mut rest {
                        let take = piece.len().min(written);
                        *piece = &piece[take..];
                        written -= take;
                    }
                }
            }
        }
        counted.flush().await.expect("flush");
        counted.shutdown().await.expect("shutdown");
        drop(counted);
        reader.await.expect("reader task")
    }

    /// Checks that `bytes` is our JSON answer with `status`.
    fn assert_json_answer(bytes: &[u8], status: u16) {
        let text = String::from_utf8_lossy(bytes);
        let (head, body) = text.split_once("\r\n\r\n").expect("a head");
        let mut lines = head.lines();
        let status_line = lines.next().expect("a status line");
        assert!(
            status_line.starts_with(&format!("HTTP/1.1 {status} ")),
            "{text}"
        );
        let headers: Vec<(String, String)> = lines
            .map(|line| {
                let (name, value) = line.split_once(':').expect("a header");
                (name.to_ascii_lowercase(), value.trim().to_owned())
            })
            .collect();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(header("content-type"), Some("application/json"), "{text}");
        assert_eq!(
            header("content-length"),
            Some(body.len().to_string().as_str()),
            "{text}"
        );
        assert_eq!(header("connection"), Some("close"), "{text}");
        assert_eq!(
            header("date"),
            Some("Wed, 02 Dec 2026 08:32:40 GMT"),
            "{text}"
        );
        assert!(
            header("x-request-id").is_some_and(|id| id.len() == 36),
            "{text}"
        );
        let json: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
        let object = json.as_object().expect("an object");
        assert_eq!(object.len(), 1, "{json}");
        assert!(
            json["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{json}"
        );
    }

    #[tokio::test]
    async fn hypers_answer_after_complete_responses_is_replaced_by_a_json_one() {
        let head_response = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
            content-length: 15\r\n\r\n";
        let continue_then_created = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\n\
            Content-Length: 2\r\n\r\n{}";
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
            5\r\nHTTP/\r\n17;ext=1\r\n1.1 400 Bad Request\r\n\r\n\r\n\
            0\r\nx-trailer: HTTP/1.1 400\r\n\r\n";
        let no_content = b"HTTP/1.1 204 No Content\r\ncontent-length: 15\r\n\r\n";
        let methods = [
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::GET,
            Method::DELETE,
        ];
        let pieces: [&[u8]; 6] = [
            OK,
            head_response,
            continue_then_created,
            chunked,
            no_content,
            HYPER_400,
        ];
        let legit: Vec<u8> = pieces[..5].concat();
        for writes in [Writes::Each, Writes::Vectored] {
            for capacity in [1 << 16, 7, 1] {
                let out = through(&methods, &pieces, writes, capacity).await;
                assert!(
                    out.starts_with(&legit),
                    "{writes:?}, {capacity}: {}",
                    String::from_utf8_lossy(&out)
                );
                assert_json_answer(&out[legit.len()..], 400);
            }
        }
        // All in one piece.
        let all = pieces.concat();
        let out = through(&methods, &[&all], Writes::Each, 1 << 16).await;
        assert!(out.starts_with(&legit));
        assert_json_answer(&out[legit.len()..], 400);
    }

    #[tokio::test]
    async fn hypers_answer_on_a_fresh_connection_is_replaced() {
        let out = through(&[], &[HYPER_431], Writes::Each, 1 << 16).await;
        assert_json_answer(&out, 431);
    }

    #[tokio::test]
    async fn a_response_the_service_was_asked_for_goes_out_unchanged_whatever_its_shape() {
        let out = through(&[Method::GET], &[HYPER_400, OK], Writes::Each, 1 << 16).await;
        assert_eq!(out, [HYPER_400, OK].concat());
    }

    #[tokio::test]
    async fn a_head_nobody_asked_for_without_hypers_shape_goes_out_unchanged() {
        let other = b"HTTP/1.1 400 Bad Request\r\nx-request-id: 1\r\ncontent-length: 0\r\n\r\n";
        let out = through(&[], &[other, HYPER_400], Writes::Each, 1 << 16).await;
        assert_eq!(
            out,
            [&other[..], HYPER_400].concat(),
            "steps aside for good"
        );
        let ok_shape = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        let out = through(&[], &[ok_shape], Writes::Each, 1 << 16).await;
        assert_eq!(out, ok_shape);
    }

    #[tokio::test]
    async fn after_a_body_until_close_nothing_is_touched() {
        let until_close = b"HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\nsome text";
        let out = through(
            &[Method::GET],
            &[until_close, HYPER_400],
            Writes::Each,
            1 << 16,
        )
        .await;
        assert_eq!(out, [&until_close[..], HYPER_400].concat());
    }

    #[tokio::test]
    async fn an_unfinished_held_head_is_written_as_it_is_on_flush() {
        let out = through(&[], &[b"HTTP/1.1 400 Bad"], Writes::Each, 1 << 16).await;
        assert_eq!(out, b"HTTP/1.1 400 Bad");
    }

    #[test]
    fn only_hypers_exact_answer_shape_is_recognised() {
        let (status, date) = parse_error_answer(HYPER_431).expect("hyper's shape");
        assert_eq!(status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        assert_eq!(date, Some(&b"Wed, 02 Dec 2026 08:32:40 GMT"[..]));
        assert!(
            parse_error_answer(b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\n\r\n").is_some()
        );
        for other in [
            &b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 2\r\n\r\n"[..],
            b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ncontent-type: text/plain\r\n\r\n",
            b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 4000 Bad\r\ncontent-length: 0\r\n\r\n",
            b"400 Bad Request\r\ncontent-length: 0\r\n\r\n",
        ] {
            assert_eq!(
                parse_error_answer(other),
                None,
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }

    #[test]
    fn the_connection_limit_leaves_the_reserve_of_the_open_file_limit() {
        assert_eq!(effective_max_connections(10_000, None), 10_000);
        assert_eq!(effective_max_connections(10_000, Some(1_024)), 768);
        assert_eq!(effective_max_connections(500, Some(1_048_576)), 500);
        assert_eq!(effective_max_connections(10_000, Some(256)), 128);
        assert_eq!(effective_max_connections(10_000, Some(1)), 1);
        assert_eq!(effective_max_connections(0, Some(1_024)), 1);
    }

    #[test]
    fn a_persisting_condition_is_logged_once_per_interval_and_its_end_once() {
        let mut throttle = Throttle::default();
        assert_eq!(throttle.hit(), Some(1));
        assert_eq!(throttle.hit(), None);
        assert_eq!(throttle.hit(), None);
        assert_eq!(throttle.end(), Some(3));
        assert_eq!(throttle.end(), None);
        assert_eq!(throttle.hit(), Some(1));
    }
}
