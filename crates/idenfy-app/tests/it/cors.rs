//! CORS (`CORS_ALLOWED_ORIGINS`): only on the user routes, only for the configured origins,
//! and not at all when none is configured.

use std::{sync::Arc, time::Duration};

use idenfy_app::dev::memory_sessions;
use idenfy_client::Secret;
use idenfy_core::Environment;
use idenfy_http::AppState;
use idenfy_sim::{Sim, SimConfig, SimHandle};
use reqwest::{Method, Response, header};

use crate::support::{TOKEN, USER, serve};

const ALLOWED: &str = "https://app.example.com";
const OTHER: &str = "https://evil.example.com";

/// The app (live and sandbox) behind `with_cors(origins)`: its base URL, and the simulator
/// it needs kept alive.
async fn app(origins: &[&str]) -> (String, SimHandle) {
    let sim = Sim::start(SimConfig::default())
        .await
        .expect("start idenfy-sim");
    let sessions = |environment| {
        Arc::new(memory_sessions(&sim, environment, Duration::from_millis(1)).expect("sessions"))
    };
    let state = AppState::new(sessions(Environment::Live), idenfy_app::metrics::handle())
        .with_sandbox(sessions(Environment::Sandbox))
        .with_internal_token(Secret::new(TOKEN));
    let origins: Vec<String> = origins.iter().map(|&o| o.to_owned()).collect();
    let base = serve(idenfy_http::with_cors(idenfy_http::router(state), &origins)).await;
    (base, sim)
}

/// A preflight for a `GET` with `X-Holo-User-Id` from `origin`.
async fn preflight(base: &str, path: &str, origin: &str) -> Response {
    reqwest::Client::new()
        .request(Method::OPTIONS, format!("{base}{path}"))
        .header(header::ORIGIN, origin)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
        .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "x-holo-user-id")
        .send()
        .await
        .expect("preflight")
}

fn text(response: &Response, name: header::HeaderName) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().expect("ASCII header").to_ascii_lowercase())
}

/// Every `access-control-*` header of `response`.
fn cors_headers(response: &Response) -> Vec<String> {
    response
        .headers()
        .keys()
        .map(|name| name.as_str().to_owned())
        .filter(|name| name.starts_with("access-control-"))
        .collect()
}

const USER_ROUTES: [&str; 6] = [
    "/idenfy-sessions/00000000-0000-0000-0000-000000000000/status",
    "/session-status/v2?sid=00000000-0000-0000-0000-000000000000",
    "/idenfy-sessions",
    "/sandbox/idenfy-sessions/00000000-0000-0000-0000-000000000000/status",
    "/sandbox/session-status/v2?sid=00000000-0000-0000-0000-000000000000",
    "/sandbox/idenfy-sessions",
];

#[tokio::test]
async fn a_preflight_from_an_allowed_origin_is_answered_on_every_user_route() {
    let (base, _sim) = app(&[ALLOWED, "http://localhost:3000"]).await;
    for path in USER_ROUTES {
        let response = preflight(&base, path, ALLOWED).await;
        assert!(response.status().is_success(), "{path}: {response:?}");
        assert_eq!(
            text(&response, header::ACCESS_CONTROL_ALLOW_ORIGIN).as_deref(),
            Some(ALLOWED),
            "{path}"
        );
        let methods = text(&response, header::ACCESS_CONTROL_ALLOW_METHODS).expect("methods");
        assert!(methods.contains("get"), "{path}: {methods}");
        assert!(!methods.contains("post"), "{path}: {methods}");
        let headers = text(&response, header::ACCESS_CONTROL_ALLOW_HEADERS).expect("headers");
        for needed in [
            "x-holo-user-id",
            "authorization",
            "content-type",
            "x-request-id",
        ] {
            assert!(
                headers.contains(needed),
                "{path}: {needed} not in {headers}"
            );
        }
        assert_eq!(
            text(&response, header::ACCESS_CONTROL_MAX_AGE).as_deref(),
            Some("600")
        );
        assert_eq!(
            text(&response, header::ACCESS_CONTROL_ALLOW_CREDENTIALS),
            None,
            "no credentials"
        );
    }
    let second = preflight(&base, "/idenfy-sessions", "http://localhost:3000").await;
    assert_eq!(
        text(&second, header::ACCESS_CONTROL_ALLOW_ORIGIN).as_deref(),
        Some("http://localhost:3000")
    );
}

#[tokio::test]
async fn a_preflight_from_another_origin_gets_no_allow_origin() {
    let (base, _sim) = app(&[ALLOWED]).await;
    for path in USER_ROUTES {
        for origin in [OTHER, "https://app.example.com.evil.example", "null"] {
            let response = preflight(&base, path, origin).await;
            assert_eq!(
                text(&response, header::ACCESS_CONTROL_ALLOW_ORIGIN),
                None,
                "{path} from {origin}"
            );
        }
    }
}

#[tokio::test]
async fn an_actual_get_from_an_allowed_origin_carries_allow_origin_and_exposes_headers() {
    let (base, _sim) = app(&[ALLOWED]).await;
    let http = reqwest::Client::new();
    for path in ["/idenfy-sessions", "/sandbox/idenfy-sessions"] {
        let response = http
            .get(format!("{base}{path}"))
            .header(header::ORIGIN, ALLOWED)
            .header("X-Holo-User-Id", USER)
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(
            text(&response, header::ACCESS_CONTROL_ALLOW_ORIGIN).as_deref(),
            Some(ALLOWED),
            "{path}"
        );
        let exposed =
            text(&response, header::ACCESS_CONTROL_EXPOSE_HEADERS).expect("exposed headers");
        assert!(exposed.contains("retry-after"), "{exposed}");
        assert!(exposed.contains("x-request-id"), "{exposed}");
        assert!(response.headers().contains_key("x-request-id"));
    }
    // An error is readable by the page too: the 401 of a missing identity.
    let refused = http
        .get(format!("{base}/idenfy-sessions"))
        .header(header::ORIGIN, ALLOWED)
        .send()
        .await
        .expect("GET");
    assert_eq!(refused.status(), 401);
    assert_eq!(
        text(&refused, header::ACCESS_CONTROL_ALLOW_ORIGIN).as_deref(),
        Some(ALLOWED)
    );
    // Another origin's GET is answered (CORS is enforced by the browser) without the header.
    let other = http
        .get(format!("{base}/idenfy-sessions"))
        .header(header::ORIGIN, OTHER)
        .header("X-Holo-User-Id", USER)
        .send()
        .await
        .expect("GET");
    assert_eq!(other.status(), 200);
    assert_eq!(text(&other, header::ACCESS_CONTROL_ALLOW_ORIGIN), None);
}

#[tokio::test]
async fn internal_webhook_and_operational_routes_never_get_cors_headers() {
    let (base, _sim) = app(&[ALLOWED]).await;
    let http = reqwest::Client::new();
    for path in [
        "/internal/sessions",
        "/internal/sessions/00000000-0000-0000-0000-000000000000/idenfy",
        "/idenfy/webhook",
        "/sandbox/idenfy/webhook",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/no-such-route",
    ] {
        let response = http
            .request(Method::OPTIONS, format!("{base}{path}"))
            .header(header::ORIGIN, ALLOWED)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .send()
            .await
            .expect("preflight");
        assert!(
            cors_headers(&response).is_empty(),
            "preflight {path}: {:?}",
            response.headers()
        );
        let response = http
            .post(format!("{base}{path}"))
            .header(header::ORIGIN, ALLOWED)
            .bearer_auth(TOKEN)
            .header(header::CONTENT_TYPE, "application/json")
            .body("{}")
            .send()
            .await
            .expect("POST");
        assert!(
            cors_headers(&response).is_empty(),
            "POST {path}: {:?}",
            response.headers()
        );
    }
}

#[tokio::test]
async fn without_configured_origins_no_cors_header_appears() {
    let (base, _sim) = app(&[]).await;
    let http = reqwest::Client::new();
    for path in USER_ROUTES {
        let response = preflight(&base, path, ALLOWED).await;
        assert!(
            cors_headers(&response).is_empty(),
            "{path}: {:?}",
            response.headers()
        );
        let response = http
            .get(format!("{base}{path}"))
            .header(header::ORIGIN, ALLOWED)
            .header("X-Holo-User-Id", USER)
            .send()
            .await
            .expect("GET");
        assert!(
            cors_headers(&response).is_empty(),
            "{path}: {:?}",
            response.headers()
        );
        assert!(!response.headers().contains_key(header::VARY), "{path}");
    }
}
