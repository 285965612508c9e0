//! The hosted page: renders without JavaScript, opens the token, and its form POST decides.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{config, mint, start, status_of, str_of};

#[tokio::test]
async fn the_page_opens_the_token_and_its_form_post_approves() {
    let sim = start(config()).await;
    let token = mint(&sim, json!({ "clientId": "web-user" })).await;
    let scan_ref = str_of(&token, "scanRef");
    let auth_token = str_of(&token, "authToken");
    let browser = reqwest::Client::new();
    let page = browser
        .get(str_of(&token, "redirectUrl"))
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.expect("html");
    assert!(!html.contains("<script"), "no JavaScript");
    assert!(html.contains(&scan_ref));
    assert!(html.contains("ACTIVE"));
    assert!(html.contains("action=\"/api/v2/redirect/decide\""));
    for button in ["Approve", "Deny", "Mark suspected", "Abandon"] {
        assert!(html.contains(button), "{button}");
    }
    assert!(sim.session(&scan_ref).expect("session").opened_at.is_some());

    // What a browser sends when the Approve button is pressed; it follows the 303.
    let done = browser
        .post(format!("{}/api/v2/redirect/decide", sim.base_url()))
        .form(&[("authToken", auth_token.as_str()), ("outcome", "approve")])
        .send()
        .await
        .expect("form post");
    assert_eq!(done.status(), StatusCode::OK);
    assert!(
        done.url().as_str().contains("/result?status=success"),
        "{}",
        done.url()
    );
    assert_eq!(status_of(&sim, &scan_ref).await["status"], "APPROVED");

    // Deciding twice is refused; the page now shows the result without buttons.
    let again = browser
        .post(format!("{}/api/v2/redirect/decide", sim.base_url()))
        .form(&[("authToken", auth_token.as_str()), ("outcome", "deny")])
        .send()
        .await
        .expect("form post");
    assert_eq!(again.status(), StatusCode::CONFLICT);
    let html = browser
        .get(str_of(&token, "redirectUrl"))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(html.contains("APPROVED") && !html.contains("<form"));
    sim.shutdown().await;
}

#[tokio::test]
async fn deny_goes_to_the_error_url() {
    let sim = start(config()).await;
    let token = mint(
        &sim,
        json!({ "clientId": "u", "errorUrl": "http://127.0.0.1:9/failed" }),
    )
    .await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let done = no_redirects
        .post(format!("{}/api/v2/redirect/decide", sim.base_url()))
        .form(&[
            ("authToken", str_of(&token, "authToken").as_str()),
            ("outcome", "deny"),
        ])
        .send()
        .await
        .expect("form post");
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert_eq!(done.headers()["location"], "http://127.0.0.1:9/failed");
    assert_eq!(
        status_of(&sim, &str_of(&token, "scanRef")).await["status"],
        "DENIED"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn everything_shown_is_escaped() {
    let sim = start(config()).await;
    let token = mint(
        &sim,
        json!({ "clientId": "<script>alert(\"x\")</script>&" }),
    )
    .await;
    let html = reqwest::get(str_of(&token, "redirectUrl"))
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(!html.contains("<script>"));
    assert!(html.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;"));
    sim.shutdown().await;
}

#[tokio::test]
async fn expired_and_unknown_tokens_show_the_expired_page() {
    let sim = start(config()).await;
    let token = mint(&sim, json!({ "clientId": "u", "expiryTime": 60 })).await;
    sim.advance_clock(Duration::from_secs(61));
    let page = reqwest::get(str_of(&token, "redirectUrl"))
        .await
        .expect("page");
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.expect("html");
    assert!(html.contains("expired") && !html.contains("<form"));

    let unknown = reqwest::get(format!("{}/api/v2/redirect?authToken=nope", sim.base_url()))
        .await
        .expect("page");
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert!(unknown.text().await.expect("html").contains("expired"));
    sim.shutdown().await;
}
