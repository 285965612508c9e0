//! insta snapshots of every view and webhook response body (ids, tokens and times redacted).

use idenfy_core::{IdenfyErrorKind, VerificationStatus};
use serde_json::json;

use crate::support::{Harness, Seed, owner};

macro_rules! snapshot {
    ($name:expr, $value:expr) => {
        insta::assert_json_snapshot!($name, $value, {
            ".sid" => "[parent-id]",
            ".idenfy.sid" => "[parent-id]",
            ".lastCheckedAt" => "[time]",
            "[].createdAt" => "[time]",
            "[]._id" => "[row-id]",
            "[].createdBySessionId" => "[parent-id]",
        })
    };
}

#[tokio::test]
async fn view_in_progress() {
    let h = Harness::new();
    let row = h.seed(Seed::default()).await;
    let r = h
        .sessions
        .resolve(row.id.as_str(), &owner())
        .await
        .expect("resolves");
    snapshot!("view_in_progress", r.view);
}

#[tokio::test]
async fn view_final_decisions() {
    for (name, status) in [
        ("view_final_approved", VerificationStatus::Approved),
        ("view_final_denied", VerificationStatus::Denied),
        ("view_final_suspected", VerificationStatus::Suspected),
    ] {
        let h = Harness::new();
        let row = h.seed(Seed::decided(status)).await;
        let r = h
            .sessions
            .resolve(row.id.as_str(), &owner())
            .await
            .expect("resolves");
        snapshot!(name, r.view);
    }
}

#[tokio::test]
async fn view_recovered() {
    let h = Harness::new();
    let row = h.seed(Seed::expired()).await;
    let r = h
        .sessions
        .resolve(row.id.as_str(), &owner())
        .await
        .expect("resolves");
    snapshot!("view_recovered", r.view);
}

#[tokio::test]
async fn view_pending_after_a_failed_mint() {
    let h = Harness::new();
    let row = h.seed(Seed::expired()).await;
    h.idenfy.push_mint_error(IdenfyErrorKind::Server);
    let r = h
        .sessions
        .resolve(row.id.as_str(), &owner())
        .await
        .expect("resolves");
    snapshot!("view_pending", r.view);
}

#[tokio::test]
async fn view_gave_up() {
    let h = Harness::new();
    let row = h
        .seed(Seed {
            recreation_count: 10,
            ..Seed::expired()
        })
        .await;
    let r = h
        .sessions
        .resolve(row.id.as_str(), &owner())
        .await
        .expect("resolves");
    snapshot!("view_gave_up", r.view);
}

#[tokio::test]
async fn view_poll_failed() {
    let h = Harness::new();
    let row = h.seed(Seed::default()).await;
    h.idenfy.push_status_error(IdenfyErrorKind::Server);
    let r = h
        .sessions
        .resolve(row.id.as_str(), &owner())
        .await
        .expect("resolves");
    snapshot!("view_poll_failed", r.view);
}

#[tokio::test]
async fn status_v2_views() {
    let h = Harness::new();
    let row = h.seed(Seed::decided(VerificationStatus::Denied)).await;
    let v2 = h
        .sessions
        .status_v2(row.parent_id.as_str(), &owner())
        .await
        .expect("resolves");
    snapshot!("status_v2_denied", v2);
    let row = h
        .seed(Seed {
            scan_ref: "SCAN_OTHER".into(),
            ..Seed::expired()
        })
        .await;
    h.idenfy.push_mint_error(IdenfyErrorKind::Timeout);
    let v2 = h
        .sessions
        .status_v2(row.parent_id.as_str(), &owner())
        .await
        .expect("resolves");
    snapshot!("status_v2_pending", v2);
}

#[tokio::test]
async fn listed_sessions_carry_no_tokens() {
    let h = Harness::new();
    h.seed(Seed::default()).await;
    let listed = h.sessions.list(&owner()).await.expect("lists");
    let text = serde_json::to_string(&listed).expect("json");
    assert!(
        !text.contains("AUTH_OLD"),
        "no tokens in listings (docs/differences-from-id-server.md, D22)"
    );
    snapshot!("listed_sessions", listed);
}

#[tokio::test]
async fn webhook_acknowledgements() {
    let h = Harness::new();
    let row = h.seed(Seed::expired()).await;
    let ignored = h
        .webhook("DOCUMENT_EXPIRATION", json!({"scanRef": "SCAN_OLD"}))
        .await
        .expect("ok");
    snapshot!("webhook_ignored", ignored);
    h.sessions
        .resolve(row.id.as_str(), &owner())
        .await
        .expect("recovers");
    let superseded = h
        .webhook(
            "IDENTIFICATION_EXPIRED",
            json!({"scanRef": "SCAN_OLD", "status": {"overall": "EXPIRED"}}),
        )
        .await
        .expect("ok");
    snapshot!("webhook_superseded", superseded);
    let body = json!({"scanRef": "SCAN_NEW_1", "final": true, "status": {"overall": "APPROVED"}});
    let applied = h
        .webhook("IDENTIFICATION_AUTO_FINISHED", body.clone())
        .await
        .expect("ok");
    snapshot!("webhook_applied", applied);
    let duplicate = h
        .webhook("IDENTIFICATION_AUTO_FINISHED", body)
        .await
        .expect("ok");
    snapshot!("webhook_duplicate", duplicate);
}
