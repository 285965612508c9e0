//! End to end: three `idenfy-app serve` processes sharing a MongoDB-protocol database
//! (mongo-java-server locally), Valkey and one in-process idenfy-sim. 48 pollers across the three
//! processes recover an expired token exactly once; webhooks reach every process's view;
//! a denial and the recreation cap fail the parent in MongoDB.
//!
//! Needs real services (`cargo xtask services up`, or `cargo xtask test`); skips with a
//! printed reason otherwise, and fails instead under CI / `IDENFY_REQUIRE_SERVICES=1`.

use std::{
    collections::BTreeSet,
    net::TcpListener,
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use dev_services::{ServiceUrls, unique_name, urls_for_test};
use idenfy_sim::{Outcome, Sim, SimConfig, SimHandle};
use mongodb::bson::{doc, oid::ObjectId};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::support::{Created, send};

const TOKEN: &str = "e2e-internal-token-0123456789abcdef0123";
const POLLERS: usize = 48;

/// The three app processes; killed when dropped (also when the test panics).
struct Apps {
    children: Vec<Child>,
    bases: Vec<String>,
    logs: Vec<PathBuf>,
}

impl Drop for Apps {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.start_kill();
        }
    }
}

impl Apps {
    fn log_tail(&self) -> String {
        self.logs
            .iter()
            .map(|path| {
                let text = std::fs::read_to_string(path).unwrap_or_default();
                let start = text.len().saturating_sub(3_000);
                format!("--- {}\n{}", path.display(), &text[start..])
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

async fn start_apps(urls: &ServiceUrls, database: &str, sim: &SimHandle, ports: &[u16]) -> Apps {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let mut apps = Apps {
        children: Vec::new(),
        bases: Vec::new(),
        logs: Vec::new(),
    };
    for (i, port) in ports.iter().enumerate() {
        let log = tmp.join(format!("{database}-app{i}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let config = sim.config();
        let child = Command::new(env!("CARGO_BIN_EXE_idenfy-app"))
            .arg("serve")
            .env("MONGODB_URI", &urls.mongodb_uri)
            .env("MONGODB_DATABASE", database)
            .env("VALKEY_URL", &urls.valkey_url)
            .env("IDENFY_API_KEY", &config.api_key)
            .env("IDENFY_API_SECRET", &config.api_secret)
            .env("IDENFY_WEBHOOK_SIGNING_KEY", &config.webhook_signing_key)
            .env_remove("IDENFY_SANDBOX_API_KEY")
            .env_remove("IDENFY_SANDBOX_API_SECRET")
            .env_remove("IDENFY_SANDBOX_WEBHOOK_SIGNING_KEY")
            .env("IDENFY_BASE_URL", sim.base_url())
            .env("POLL_INTERVAL_MS", "500")
            .env("RECREATION_CAP", "1")
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("INTERNAL_SERVICE_TOKEN", TOKEN)
            .env("DATA_DIR", tmp.join(format!("{database}-app{i}-data")))
            .env("LOG_FORMAT", "text")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(file))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn idenfy-app serve");
        apps.children.push(child);
        apps.bases.push(format!("http://127.0.0.1:{port}"));
        apps.logs.push(log);
    }
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0..apps.bases.len() {
        loop {
            if let Ok(Some(status)) = apps.children[i].try_wait() {
                panic!("app {i} exited with {status}\n{}", apps.log_tail());
            }
            let ready = http
                .get(format!("{}/readyz", apps.bases[i]))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "app {i} never ready\n{}",
                apps.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    apps
}

async fn create(http: &reqwest::Client, base: &str, user: &str) -> Created {
    let (code, body) = send(
        http.post(format!("{base}/internal/sessions"))
            .bearer_auth(TOKEN)
            .header("Idempotency-Key", format!("e2e-{user}"))
            .json(&json!({ "sigDigest": user, "flow": "gov-id" })),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    Created::from(&body)
}

async fn status(http: &reqwest::Client, base: &str, row: &str, user: &str) -> Value {
    let (code, body) = send(
        http.get(format!("{base}/idenfy-sessions/{row}/status"))
            .header("X-Holo-User-Id", user),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    body
}

/// Polls `base` until `done`; `EXPIRED` fails unless `expired_ok`.
async fn poll_until(
    http: &reqwest::Client,
    base: &str,
    row: &str,
    user: &str,
    expired_ok: bool,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let body = status(http, base, row, user).await;
        if !expired_ok {
            assert_ne!(
                body["idenfyVerificationStatus"], "EXPIRED",
                "anti-flash: {body}"
            );
        }
        if done(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{base}: never reached the state; last {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The parent's `status` in MongoDB, polled until it is `expected` (the webhook handler
/// fails parents just after it answered the row's new state).
async fn assert_parent_status(
    client: &mongodb::Client,
    database: &str,
    parent: &str,
    expected: &str,
) {
    let id = ObjectId::parse_str(parent).expect("parent id");
    let sessions = client
        .database(database)
        .collection::<mongodb::bson::Document>("sessions");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = sessions
            .find_one(doc! { "_id": id })
            .await
            .expect("find parent")
            .expect("parent exists");
        let status = found.get_str("status").expect("status").to_owned();
        if status == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "parent {parent} is {status}, not {expected}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_processes_recover_once_and_converge() {
    let Some(urls) = urls_for_test("idenfy-app e2e") else {
        return;
    };
    let database = unique_name("app_e2e");
    let ports = [free_port(), free_port(), free_port()];
    let sim = Sim::start(SimConfig {
        webhook_url: Some(format!("http://127.0.0.1:{}/idenfy/webhook", ports[0])),
        ..SimConfig::default()
    })
    .await
    .expect("start idenfy-sim");
    let apps = start_apps(&urls, &database, &sim, &ports).await;
    let http = reqwest::Client::new();
    let mongo = mongodb::Client::with_uri_str(&urls.mongodb_uri)
        .await
        .expect("mongodb client");

    // 1. Create through one process; expire at iDenfy.
    let user = "e2e-user-approve";
    let created = create(&http, &apps.bases[1], user).await;
    assert_eq!(
        sim.counters().tokens_minted_by_client.get(&created.parent),
        Some(&1)
    );
    assert!(sim.expire_token(&created.scan_ref));

    // 2. 48 pollers over three processes, until each holds a fresh token.
    let mut pollers = Vec::new();
    for i in 0..POLLERS {
        let http = http.clone();
        let base = apps.bases[i % apps.bases.len()].clone();
        let row = created.row.clone();
        let old = created.token.clone();
        pollers.push(tokio::spawn(async move {
            let body = poll_until(&http, &base, &row, user, false, |b| {
                b["idenfyAuthToken"].as_str().is_some_and(|t| t != old)
            })
            .await;
            body["idenfyAuthToken"].as_str().map(str::to_owned)
        }));
    }
    let mut tokens = BTreeSet::new();
    for poller in pollers {
        tokens.insert(poller.await.expect("poller"));
    }
    assert_eq!(
        tokens.len(),
        1,
        "all pollers converge on one token: {tokens:?}"
    );
    assert_eq!(
        sim.counters().tokens_minted_by_client.get(&created.parent),
        Some(&2),
        "creation + exactly one recovery\n{}",
        apps.log_tail()
    );
    let recovered = status(&http, &apps.bases[2], &created.row, user).await;
    assert_eq!(recovered["recreationCount"], 1);
    let new_scan_ref = recovered["idenfyScanRef"]
        .as_str()
        .expect("scanRef")
        .to_owned();

    // 3. Approve: the webhook reaches app 0; every process answers APPROVED.
    assert!(sim.decide(&new_scan_ref, Outcome::Approve).await);
    for base in &apps.bases {
        let body = poll_until(&http, base, &created.row, user, false, |b| {
            b["idenfyVerificationStatus"] == "APPROVED"
        })
        .await;
        assert_eq!(body["status"], "complete");
    }

    // 4. Deny: the parent fails (VERIFICATION_FAILED in MongoDB).
    let user = "e2e-user-deny";
    let denied = create(&http, &apps.bases[2], user).await;
    assert!(sim.decide(&denied.scan_ref, Outcome::Deny).await);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, body) = send(
            http.get(format!(
                "{}/session-status/v2?sid={}",
                apps.bases[1], denied.parent
            ))
            .header("X-Holo-User-Id", user),
        )
        .await;
        assert_eq!(code, 200, "{body}");
        if body["idenfy"]["status"] == "DENIED" {
            break;
        }
        assert!(Instant::now() < deadline, "never DENIED: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_parent_status(&mongo, &database, &denied.parent, "VERIFICATION_FAILED").await;

    // 5. The cap (RECREATION_CAP=1): one recovery, then the second expiry gives up.
    let user = "e2e-user-capped";
    let capped = create(&http, &apps.bases[0], user).await;
    assert!(sim.expire_token(&capped.scan_ref));
    let once = poll_until(&http, &apps.bases[1], &capped.row, user, false, |b| {
        b["idenfyScanRef"]
            .as_str()
            .is_some_and(|s| s != capped.scan_ref)
    })
    .await;
    assert_eq!(once["recreationCount"], 1);
    assert!(sim.expire_token(once["idenfyScanRef"].as_str().expect("scanRef")));
    let gave_up = poll_until(&http, &apps.bases[2], &capped.row, user, true, |b| {
        b["idenfyVerificationStatus"] == "EXPIRED"
    })
    .await;
    assert_eq!(gave_up["status"], "failed");
    assert!(
        gave_up["idenfyAuthToken"].is_null(),
        "no stale token: {gave_up}"
    );
    assert_parent_status(&mongo, &database, &capped.parent, "VERIFICATION_FAILED").await;
    assert_eq!(
        sim.counters().tokens_minted_by_client.get(&capped.parent),
        Some(&2)
    );

    drop(apps);
    let _ = mongo.database(&database).drop().await;
    sim.shutdown().await;
}
