//! iDenfy's error answers (and transport failures) mapped to `IdenfyErrorKind`.

use std::time::{Duration, Instant};

use idenfy_client::{IdenfyApi, IdenfyError, IdenfyErrorKind, RetryPolicy};
use idenfy_core::ScanRef;
use serde_json::{Value, json};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{method, path},
};

use crate::{SCAN_REF, client, client_with, config, parent};

/// Mints against a fresh server answering `status` with `body` once.
async fn mint_error(status: u16, body: Value) -> IdenfyError {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v2/token"))
        .respond_with(ResponseTemplate::new(status).set_body_json(body))
        .expect(1)
        .mount(&server)
        .await;
    client(&server.uri())
        .mint(&parent())
        .await
        .expect_err("an error answer")
}

macro_rules! error_class {
    ($name:ident, $status:expr, $body:expr, $kind:ident, $identifier:expr) => {
        #[tokio::test]
        async fn $name() {
            let err = mint_error($status, $body).await;
            assert_eq!(err.kind, IdenfyErrorKind::$kind, "{err}");
            assert_eq!(err.http_status, Some($status));
            assert_eq!(err.identifier.as_deref(), $identifier);
            assert!(err.source.is_some(), "the reqwest status error is kept");
        }
    };
}

error_class!(
    http_401_is_unauthorized,
    401,
    json!({ "message": "Invalid authorization credentials" }),
    Unauthorized,
    None
);
error_class!(
    http_403_is_unauthorized,
    403,
    json!({ "message": "This endpoint is not available for SANDBOX partners." }),
    Unauthorized,
    None
);
error_class!(
    http_402_is_money,
    402,
    json!({ "message": "Action not allowed due to lack of funds or exceeded limit." }),
    Money,
    None
);
error_class!(
    token_limit_is_money,
    400,
    json!({ "identifier": "PERMISSIONS_ERROR", "message": "Partner reached token limit." }),
    Money,
    Some("PERMISSIONS_ERROR")
);
error_class!(
    http_429_is_rate_limited,
    429,
    json!({ "identifier": "TOO_MANY_REQUESTS", "message": "Request was throttled." }),
    RateLimited,
    Some("TOO_MANY_REQUESTS")
);
error_class!(
    too_many_requests_identifier_is_rate_limited,
    400,
    json!({ "identifier": "TOO_MANY_REQUESTS", "message": "Request was throttled." }),
    RateLimited,
    Some("TOO_MANY_REQUESTS")
);
error_class!(
    http_409_is_conflict,
    409,
    json!({ "identifier": "CONFLICT", "message": "Client ID already exists" }),
    Conflict,
    Some("CONFLICT")
);
error_class!(
    http_404_is_not_found,
    404,
    json!({ "identifier": "NOT_FOUND", "message": "Not found." }),
    NotFound,
    Some("NOT_FOUND")
);
error_class!(
    other_400_is_invalid_request,
    400,
    json!({ "identifier": "BAD_VALUE", "message": "Invalid value for locale." }),
    InvalidRequest,
    Some("BAD_VALUE")
);
error_class!(
    http_500_is_server,
    500,
    json!({ "identifier": "INTERNAL_ERROR", "message": "Internal server error." }),
    Server,
    Some("INTERNAL_ERROR")
);

#[tokio::test]
async fn error_messages_come_from_idenfy_and_are_truncated() {
    let err = mint_error(
        400,
        json!({ "identifier": "VALIDATION_ERROR", "message": "m".repeat(1000) }),
    )
    .await;
    assert_eq!(
        err.message.chars().count(),
        201,
        "200 characters and an ellipsis"
    );
    assert!(err.to_string().contains("VALIDATION_ERROR"));
}

#[tokio::test]
async fn non_json_error_bodies_are_tolerated_and_never_copied() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v2/token"))
        .respond_with(
            ResponseTemplate::new(502).set_body_string("<html>proxy says user=alice</html>"),
        )
        .expect(1)
        .mount(&server)
        .await;

    let err = client(&server.uri())
        .mint(&parent())
        .await
        .expect_err("502");

    assert_eq!(err.kind, IdenfyErrorKind::Server);
    assert_eq!(err.identifier, None);
    assert_eq!(err.message, "HTTP 502 Bad Gateway");
}

#[tokio::test]
async fn a_closed_port_is_a_connect_error_whose_outcome_is_known() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    drop(listener);
    let mut cfg = config(&format!("http://127.0.0.1:{port}"));
    cfg.retry = RetryPolicy::none();

    let err = client_with(cfg)
        .status(&ScanRef::new(SCAN_REF))
        .await
        .expect_err("nothing listens");

    assert_eq!(err.kind, IdenfyErrorKind::Connect);
    assert!(!err.kind.outcome_unknown(), "nothing was sent");
    assert!(err.source.is_some(), "the reqwest error is kept");
}

#[tokio::test]
async fn rate_limited_reads_honour_retry_after() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v2/status"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "1")
                .set_body_json(
                    json!({ "identifier": "TOO_MANY_REQUESTS", "message": "slow down" }),
                ),
        )
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v2/status"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "scanRef": SCAN_REF, "status": "ACTIVE" })),
        )
        .expect(1)
        .mount(&server)
        .await;
    let mut cfg = config(&server.uri());
    cfg.retry.max_delay = Duration::from_secs(5);

    let started = Instant::now();
    client_with(cfg)
        .status(&ScanRef::new(SCAN_REF))
        .await
        .expect("second attempt succeeds");

    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited for Retry-After"
    );
}
