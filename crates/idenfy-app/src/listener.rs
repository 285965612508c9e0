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
//! per-connection timer ([`HeadTimer`]) whose sleep counts in two phases: while no byte of the
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

use std::{
    future::Future,
    io,
    pin::{Pin, pin},
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::Router;
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
}

impl Activity {
    fn new(epoch: Instant) -> Self {
        let activity = Self {
            epoch,
            bytes_read: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            last_active_ms: AtomicU64::new(0),
        };
        activity.touch();
        activity
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
        let io = TokioIo::new(Counted {
            stream,
            activity: Arc::clone(&activity),
        });
        let service = {
            let activity = Arc::clone(&activity);
            let router = self.shared.router.clone();
            hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                let in_flight = InFlight::start(&activity);
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

/// The socket of a connection, counting what it reads into its [`Activity`].
struct Counted {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Counted {
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

impl AsyncWrite for Counted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
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
    use super::*;

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
