//! `ValkeyLock` beyond the port contract: key names, owner tokens and TTLs as stored,
//! contention between independent instances, the EVALSHA → EVAL fallback, and failing fast
//! (not hanging) when Valkey is away, slow, or goes away and comes back.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use dev_services::urls_for_test;
use fred::{
    error::ErrorKind,
    prelude::{Builder, Client, ClientLike, Config, KeysInterface, LuaInterface},
};
use idenfy_core::{Environment, LockError, LockGuard, Nonce, RecreateLock, RowId};
use lock_valkey::{ValkeyLock, ValkeyOptions};
use tokio::{net::TcpListener, task::JoinHandle};

use crate::support::lock;

fn row() -> RowId {
    RowId::generate(idenfy_core::conformance::fixtures::now())
}

/// A plain fred client, to look at what the lock stored.
async fn raw(url: &str) -> Client {
    let client = Builder::from_config(Config::from_url(url).expect("valid URL"))
        .with_performance_config(|performance| {
            performance.default_command_timeout = Duration::from_secs(5)
        })
        .build()
        .expect("client");
    client.init().await.expect("connect");
    client
}

/// Needs no server: the lock is built without waiting for one.
#[tokio::test]
async fn keys_are_named_like_id_server() {
    let options = ValkeyOptions {
        connect_wait: Duration::ZERO,
        ..ValkeyOptions::default()
    };
    let url = format!("redis://127.0.0.1:{}", closed_port());
    let live = ValkeyLock::connect(&url, Environment::Live, options)
        .await
        .expect("connect");
    let row = row();
    assert_eq!(live.key(&row), format!("idenfy:recreate-lock:{row}"));
    let sandbox = live.for_environment(Environment::Sandbox);
    assert_eq!(sandbox.environment(), Environment::Sandbox);
    assert_eq!(
        sandbox.key(&row),
        format!("sandbox:idenfy:recreate-lock:{row}")
    );
    let prefixed = sandbox.with_key_prefix("t1:");
    assert_eq!(
        prefixed.key(&row),
        format!("t1:sandbox:idenfy:recreate-lock:{row}")
    );
    assert_eq!(
        live.key(&row),
        format!("idenfy:recreate-lock:{row}"),
        "the prefix is per handle"
    );
    live.shutdown().await;
}

/// A malformed URL is a configuration error, reported at once.
#[tokio::test]
async fn a_malformed_url_is_a_config_error() {
    let result =
        ValkeyLock::connect("not a url", Environment::Live, ValkeyOptions::default()).await;
    assert!(
        matches!(result, Err(lock_valkey::Error::Config(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn acquire_stores_a_random_owner_with_the_ttl() {
    let test = "lock-valkey lock::acquire_stores_a_random_owner_with_the_ttl";
    let (Some(urls), Some(lock)) = (urls_for_test(test), lock(test, Environment::Sandbox).await)
    else {
        return;
    };
    let raw = raw(&urls.valkey_url).await;
    let row = row();
    let before = server_millis(&raw).await;
    let guard = lock
        .acquire(&row, Duration::from_secs(10))
        .await
        .expect("reachable")
        .expect("free");
    let after = server_millis(&raw).await;
    assert_eq!(guard.owner.as_str().len(), 32, "128 random bits in hex");
    assert!(guard.owner.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
    let stored: Option<String> = raw.get(lock.key(&row)).await.expect("GET");
    assert_eq!(stored.as_deref(), Some(guard.owner.as_str()));
    // The expiry is the server's clock at the SET plus the TTL, and the SET ran between the
    // two TIME calls: exact on the server's clock, whatever time passed on ours.
    let expires_at: i64 = raw.pexpire_time(lock.key(&row)).await.expect("PEXPIRETIME");
    assert!(
        before + 10_000 <= expires_at && expires_at <= after + 10_000,
        "PEXPIRETIME {expires_at} not 10 s after the SET, between {before} and {after}"
    );

    assert!(lock.release(&guard).await.expect("reachable"));
    let gone: Option<String> = raw.get(lock.key(&row)).await.expect("GET");
    assert_eq!(gone, None);
    raw.quit().await.expect("quit");
}

/// Two independent instances (separate pools, as two replicas have) contend for one key.
#[tokio::test]
async fn independent_instances_contend_for_one_key() {
    let Some(urls) = urls_for_test("lock-valkey lock::independent_instances_contend_for_one_key")
    else {
        return;
    };
    let prefix = format!("{}:", dev_services::unique_name("contend"));
    let instance = || async {
        ValkeyLock::connect(
            &urls.valkey_url,
            Environment::Live,
            ValkeyOptions::default(),
        )
        .await
        .expect("connect")
        .with_key_prefix(prefix.clone())
    };
    let (first, second) = (instance().await, instance().await);
    let row = row();
    let winner = first
        .acquire(&row, Duration::from_secs(30))
        .await
        .expect("reachable")
        .expect("free");
    assert!(
        second
            .acquire(&row, Duration::from_secs(30))
            .await
            .expect("reachable")
            .is_none(),
        "held by first"
    );
    // The loser cannot release the winner's lock, even knowing the row.
    let forged = LockGuard {
        row: row.clone(),
        owner: Nonce::random(),
    };
    assert!(!second.release(&forged).await.expect("reachable"));
    assert!(first.release(&winner).await.expect("reachable"));
    let next = second
        .acquire(&row, Duration::from_secs(30))
        .await
        .expect("reachable")
        .expect("free again");
    assert!(
        first
            .acquire(&row, Duration::from_secs(30))
            .await
            .expect("reachable")
            .is_none(),
        "held by second"
    );
    assert!(second.release(&next).await.expect("reachable"));
    first.shutdown().await;
    second.shutdown().await;
}

/// A consumer's own pool, built with the re-exported `fred`, works as the lock: what one
/// lock holds, a lock built from a URL sees as held, and the release deletes the key.
#[tokio::test]
async fn a_lock_over_the_callers_own_pool_contends_with_a_connected_one() {
    let Some(urls) = urls_for_test(
        "lock-valkey lock::a_lock_over_the_callers_own_pool_contends_with_a_connected_one",
    ) else {
        return;
    };
    let prefix = format!("{}:", dev_services::unique_name("frompool"));
    let pool = lock_valkey::fred::prelude::Builder::from_config(
        lock_valkey::fred::prelude::Config::from_url(&urls.valkey_url).expect("valid URL"),
    )
    .build_pool(2)
    .expect("pool");
    pool.init().await.expect("connect");
    let ours = ValkeyLock::from_pool(pool.clone(), Environment::Live, Duration::from_secs(5))
        .with_key_prefix(prefix.clone());
    let theirs = ValkeyLock::connect(
        &urls.valkey_url,
        Environment::Live,
        ValkeyOptions::default(),
    )
    .await
    .expect("connect")
    .with_key_prefix(prefix);
    let row = row();
    let guard = ours
        .acquire(&row, Duration::from_secs(30))
        .await
        .expect("reachable")
        .expect("free");
    assert!(
        theirs
            .acquire(&row, Duration::from_secs(30))
            .await
            .expect("reachable")
            .is_none(),
        "held through the caller's pool"
    );
    assert!(ours.release(&guard).await.expect("reachable"));
    let raw = raw(&urls.valkey_url).await;
    let left: Option<String> = raw.get(ours.key(&row)).await.expect("get");
    assert_eq!(left, None, "released");
    raw.quit().await.expect("quit");
    theirs.shutdown().await;
    pool.quit().await.expect("quit");
}

/// After `SCRIPT FLUSH` (or a Valkey restart) EVALSHA answers NOSCRIPT; release falls back
/// to EVAL and still compares before deleting.
#[tokio::test]
async fn release_survives_a_flushed_script_cache() {
    let test = "lock-valkey lock::release_survives_a_flushed_script_cache";
    let (Some(urls), Some(lock)) = (urls_for_test(test), lock(test, Environment::Live).await)
    else {
        return;
    };
    let raw = raw(&urls.valkey_url).await;
    let row = row();
    let guard = lock
        .acquire(&row, Duration::from_secs(30))
        .await
        .expect("reachable")
        .expect("free");
    let _: () = raw.script_flush(false).await.expect("SCRIPT FLUSH");
    let forged = LockGuard {
        row: row.clone(),
        owner: Nonce::random(),
    };
    assert!(
        !lock.release(&forged).await.expect("reachable"),
        "EVAL still compares"
    );
    let _: () = raw.script_flush(false).await.expect("SCRIPT FLUSH");
    assert!(
        lock.release(&guard).await.expect("reachable"),
        "EVAL fallback releases"
    );
    assert!(
        !lock.release(&guard).await.expect("reachable"),
        "EVALSHA after the reload"
    );
    raw.quit().await.expect("quit");
}

/// The server's clock (`TIME`) in Unix milliseconds.
async fn server_millis(raw: &Client) -> i64 {
    let time: Vec<String> = raw
        .custom(fred::cmd!("TIME"), Vec::<String>::new())
        .await
        .expect("TIME");
    let [seconds, micros] = time.as_slice() else {
        panic!("TIME answered {time:?}");
    };
    let seconds: i64 = seconds.parse().expect("seconds");
    let micros: i64 = micros.parse().expect("microseconds");
    seconds * 1_000 + micros / 1_000
}

/// Asserts `Unavailable` and returns the kind of the fred error behind it.
fn unavailable<T: std::fmt::Debug>(result: Result<T, LockError>, what: &str) -> ErrorKind {
    let Err(LockError::Unavailable(source)) = &result else {
        panic!("{what}: {result:?}");
    };
    source
        .downcast_ref::<fred::error::Error>()
        .unwrap_or_else(|| panic!("{what}: not a fred error: {source:?}"))
        .kind()
        .clone()
}

/// Fails the test if `future` hangs. It bounds a hang, not speed: a minute is far beyond
/// what any step here takes on a loaded machine (and far beyond every timeout in play).
async fn hang_guard<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), future)
        .await
        .expect("hang guard: no progress within 60 s")
}

/// A free loopback port with nothing listening on it.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// No Valkey at all: `connect` returns (after `connect_wait`) without a connection, and
/// every command is `Unavailable` at once instead of queueing for a reconnect: fred's
/// fail-fast answer (`Canceled`), not the command timeout.
#[tokio::test]
async fn a_closed_port_is_unavailable_at_once() {
    let url = format!("redis://127.0.0.1:{}", closed_port());
    let lock = hang_guard(ValkeyLock::connect(
        &url,
        Environment::Live,
        ValkeyOptions::default(),
    ))
    .await
    .expect("connect does not need the server");
    assert!(!lock.is_connected());

    let guard = LockGuard {
        row: row(),
        owner: Nonce::random(),
    };
    let (acquire, release, ping) = hang_guard(async {
        (
            unavailable(
                lock.acquire(&row(), Duration::from_secs(30)).await,
                "acquire",
            ),
            unavailable(lock.release(&guard).await, "release"),
            unavailable(lock.ping().await, "ping"),
        )
    })
    .await;
    assert_eq!(
        acquire,
        ErrorKind::Canceled,
        "acquire failed fast, not queued"
    );
    assert_eq!(ping, ErrorKind::Canceled, "ping failed fast, not queued");
    assert_eq!(
        release,
        ErrorKind::Canceled,
        "release failed fast, not queued"
    );
    lock.shutdown().await;
}

/// A server that accepts connections and never answers: the connection never completes its
/// handshake, and commands end `Unavailable` (failing fast, or at the command timeout)
/// instead of hanging.
#[tokio::test]
async fn a_silent_server_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let options = ValkeyOptions {
        connect_wait: Duration::ZERO,
        ..ValkeyOptions::default()
    };
    let lock = ValkeyLock::connect(
        &format!("redis://127.0.0.1:{port}"),
        Environment::Live,
        options,
    )
    .await
    .expect("connect");
    let kinds = hang_guard(async {
        [
            unavailable(
                lock.acquire(&row(), Duration::from_secs(30)).await,
                "acquire",
            ),
            unavailable(lock.ping().await, "ping"),
        ]
    })
    .await;
    for kind in kinds {
        assert!(
            matches!(kind, ErrorKind::Canceled | ErrorKind::Timeout),
            "ended by fail-fast or the command timeout, not by {kind:?}"
        );
    }
    assert!(!lock.is_connected(), "a silent server is never connected");
    silent.abort();
    lock.shutdown().await;
}

/// A TCP proxy in front of the real Valkey that can be cut and restored on the same port:
/// "Valkey went away half-way" without stopping the Valkey other tests share.
struct Proxy {
    port: u16,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(port: u16, upstream: String) -> Proxy {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().expect("addr").port();
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let registry = Arc::clone(&tasks);
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let pipe = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                registry.lock().expect("registry").push(pipe);
            }
        });
        tasks.lock().expect("registry").push(accept);
        Proxy { port, tasks }
    }

    /// Closes the listener and every proxied connection.
    fn cut(&self) {
        for task in self.tasks.lock().expect("registry").drain(..) {
            task.abort();
        }
    }
}

/// `host:port` of a `redis://[user:pass@]host:port[/db]` URL.
fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest).to_owned()
}

#[tokio::test]
async fn valkey_going_away_is_unavailable_fast_and_the_lock_reconnects() {
    let Some(urls) = urls_for_test("lock-valkey lock::valkey_going_away_is_unavailable_fast")
    else {
        return;
    };
    let upstream = host_port(&urls.valkey_url);
    let proxy = Proxy::start(0, upstream.clone()).await;
    let options = ValkeyOptions {
        reconnect_max_delay: Duration::from_millis(500),
        ..ValkeyOptions::default()
    };
    let lock = ValkeyLock::connect(
        &format!("redis://127.0.0.1:{}", proxy.port),
        Environment::Live,
        options,
    )
    .await
    .expect("connect")
    .with_key_prefix(format!("{}:", dev_services::unique_name("lockproxy")));
    let row = row();
    let guard = lock
        .acquire(&row, Duration::from_secs(30))
        .await
        .expect("reachable")
        .expect("free");

    proxy.cut();
    // Each command ends by the connection's loss or the lock's own limits: at once when the
    // client has already noticed the closed connection (fail-fast, `Canceled`), with the
    // connection when it closes under the command (`IO`), by the command timeout when the
    // client has not noticed yet. Never waiting for the reconnect.
    let kinds = hang_guard(async {
        [
            unavailable(
                lock.acquire(&row, Duration::from_secs(30)).await,
                "acquire while away",
            ),
            unavailable(lock.release(&guard).await, "release while away"),
        ]
    })
    .await;
    for kind in kinds {
        assert!(
            matches!(
                kind,
                ErrorKind::Canceled | ErrorKind::IO | ErrorKind::Timeout
            ),
            "ended by fail-fast, the lost connection or the command timeout, not by {kind:?}"
        );
    }

    let proxy = Proxy::start(proxy.port, upstream).await;
    hang_guard(async {
        while lock.ping().await.is_err() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    // Back: the key set before the outage is still there and still ours.
    assert!(
        lock.acquire(&row, Duration::from_secs(30))
            .await
            .expect("reachable")
            .is_none()
    );
    assert!(lock.release(&guard).await.expect("reachable"));
    proxy.cut();
    lock.shutdown().await;
}
