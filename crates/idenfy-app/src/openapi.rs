//! The OpenAPI 3.1 document served at `/openapi.json`, written by hand (no code generation:
//! it keeps compile times down and the document reviewable).

use serde_json::{Value, json};

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
    })
}

fn json_response(description: &str, schema: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } }
    })
}

/// The user routes, for one path prefix (`""` or `"/sandbox"`).
fn user_paths(prefix: &str, paths: &mut serde_json::Map<String, Value>) {
    let identity = json!({ "$ref": "#/components/parameters/Identity" });
    let sandbox_note = if prefix.is_empty() {
        ""
    } else {
        " Sandbox: 404 when the sandbox credentials are not configured."
    };
    paths.insert(
        format!("{prefix}/idenfy-sessions/{{id}}/status"),
        json!({ "get": {
            "summary": format!("Status of one iDenfy session, recovering an expired token.{sandbox_note}"),
            "parameters": [identity, { "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
            "responses": {
                "200": json_response("The view (pending views carry retryAfterMs and no token)", "SessionView"),
                "401": error_response("Missing or invalid X-Holo-User-Id header"),
                "404": error_response("iDenfy session not found (unknown, malformed, or another user's)"),
                "503": error_response("Service temporarily unavailable")
            }
        }}),
    );
    paths.insert(
        format!("{prefix}/session-status/v2"),
        json!({ "get": {
            "summary": format!("Status by parent session id (id-server shape).{sandbox_note}"),
            "parameters": [identity, { "name": "sid", "in": "query", "required": true, "schema": { "type": "string" } }],
            "responses": {
                "200": json_response("Status", "StatusV2"),
                "400": error_response("Missing sid"),
                "401": error_response("Missing or invalid X-Holo-User-Id header"),
                "404": error_response("Session not found"),
                "503": error_response("Service temporarily unavailable")
            }
        }}),
    );
    paths.insert(
        format!("{prefix}/idenfy-sessions"),
        json!({ "get": {
            "summary": format!("The caller's sessions of the last 5 days, newest first, at most 10, without tokens.{sandbox_note}"),
            "parameters": [identity],
            "responses": {
                "200": json_response("Sessions", "SessionList"),
                "401": error_response("Missing or invalid X-Holo-User-Id header"),
                "503": error_response("Service temporarily unavailable")
            }
        }}),
    );
    paths.insert(
        format!("{prefix}/idenfy/webhook"),
        json!({ "post": {
            "summary": format!("iDenfy webhook receiver (raw body, at most 1 MiB, HMAC-SHA256 in Idenfy-Signature).{sandbox_note}"),
            "parameters": [
                { "name": "Idenfy-Signature", "in": "header", "required": true, "schema": { "type": "string", "pattern": "^[0-9a-fA-F]{64}$" } },
                { "name": "Idenfy-Event-Type", "in": "header", "required": false, "schema": { "type": "string" } }
            ],
            "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object" } } } },
            "responses": {
                "200": json_response("Received (applied, duplicate, superseded or ignored)", "WebhookAck"),
                "400": error_response("Malformed body / Missing scanRef"),
                "401": error_response("Missing signature / Invalid signature"),
                "404": error_response("Session not found"),
                "413": error_response("Payload too large"),
                "500": { "description": "Processing error ({\"received\": false, \"error\": \"Processing error\"}); iDenfy retries" },
                "503": error_response("Request timed out")
            }
        }}),
    );
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    user_paths("", &mut paths);
    user_paths("/sandbox", &mut paths);
    let bearer = json!([{ "serviceToken": [] }]);
    paths.insert(
        "/internal/sessions".to_owned(),
        json!({ "post": {
            "summary": "Create a parent session (IN_PROGRESS) and its iDenfy session; idempotent with Idempotency-Key",
            "security": bearer,
            "parameters": [{ "name": "Idempotency-Key", "in": "header", "required": false, "schema": { "type": "string", "minLength": 1, "maxLength": 200 } }],
            "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/CreateRequest" } } } },
            "responses": {
                "201": json_response("Created", "Created"),
                "200": json_response("Replayed (same Idempotency-Key)", "Created"),
                "400": error_response("Invalid body or Idempotency-Key"),
                "415": error_response("Content-Type must be application/json"),
                "401": error_response("Missing or invalid service token"),
                "409": error_response("A request with this Idempotency-Key is in progress (Retry-After)"),
                "422": error_response("Idempotency-Key was already used for a different request"),
                "502": error_response("iDenfy refused the request, or too many token calls for this Idempotency-Key got no answer"),
                "503": error_response("iDenfy or storage temporarily unavailable, or an earlier token call for this Idempotency-Key got no answer (Retry-After)")
            }
        }}),
    );
    paths.insert(
        "/internal/sessions/{id}/idenfy".to_owned(),
        json!({ "post": {
            "summary": "Get or create the iDenfy session of a parent created elsewhere (mints at most once)",
            "security": bearer,
            "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
            "requestBody": { "required": false, "content": { "application/json": { "schema": { "type": "object", "properties": { "sigDigest": { "type": "string" } } } } } },
            "responses": {
                "201": json_response("Created", "Created"),
                "200": json_response("Already linked", "Created"),
                "400": error_response("Invalid body, or the parent has no owner and none was given"),
                "401": error_response("Missing or invalid service token"),
                "404": error_response("Session not found"),
                "409": error_response("Session is not in progress"),
                "502": error_response("iDenfy refused the request"),
                "503": error_response("iDenfy or storage temporarily unavailable")
            }
        }}),
    );
    paths.insert("/healthz".to_owned(), json!({ "get": { "summary": "Liveness", "responses": { "200": { "description": "The process answers" } } } }));
    paths.insert("/readyz".to_owned(), json!({ "get": { "summary": "Readiness: MongoDB must answer; Valkey down is reported as degraded but still ready", "responses": { "200": { "description": "Ready" }, "503": { "description": "MongoDB unreachable" } } } }));
    paths.insert("/metrics".to_owned(), json!({ "get": { "summary": "Prometheus metrics", "responses": { "200": { "description": "Text exposition format", "content": { "text/plain": {} } } } } }));
    paths.insert("/openapi.json".to_owned(), json!({ "get": { "summary": "This document", "responses": { "200": { "description": "OpenAPI 3.1" } } } }));

    let nullable_string = json!({ "type": ["string", "null"] });
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "idenfy-sessions",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "iDenfy verification sessions with expired-session recovery. Every error is {\"error\": \"...\"}."
        },
        "paths": paths,
        "components": {
            "securitySchemes": { "serviceToken": { "type": "http", "scheme": "bearer" } },
            "parameters": {
                "Identity": { "name": "X-Holo-User-Id", "in": "header", "required": true, "description": "The user's sigDigest: one value, not blank, no comma", "schema": { "type": "string" } }
            },
            "schemas": {
                "Error": { "type": "object", "required": ["error"], "properties": { "error": { "type": "string" } } },
                "SessionView": { "type": "object", "required": ["status", "idenfyVerificationStatus", "idenfyAuthToken", "idenfyScanRef", "redirectUrl", "recreationCount"], "properties": {
                    "status": { "type": "string", "enum": ["in_progress", "complete", "failed"] },
                    "idenfyVerificationStatus": nullable_string,
                    "idenfyAuthToken": nullable_string,
                    "idenfyScanRef": nullable_string,
                    "failureReason": { "type": "string" },
                    "redirectUrl": nullable_string,
                    "recreationCount": { "type": "integer", "minimum": 0 },
                    "retryAfterMs": { "type": "integer", "minimum": 1 },
                    "lastCheckedAt": { "type": "string", "format": "date-time" }
                }},
                "StatusV2": { "type": "object", "required": ["idenfy"], "properties": { "idenfy": { "type": "object", "required": ["sid", "status", "scanRef", "authToken"], "properties": {
                    "sid": { "type": "string" },
                    "status": nullable_string,
                    "scanRef": nullable_string,
                    "authToken": nullable_string,
                    "failureReason": { "type": "string" },
                    "retryAfterMs": { "type": "integer" }
                }}}},
                "SessionList": { "type": "object", "required": ["sessions"], "properties": { "sessions": { "type": "array", "items": { "$ref": "#/components/schemas/ListedSession" } } } },
                "ListedSession": { "type": "object", "properties": {
                    "_id": { "type": "string" },
                    "status": { "type": "string" },
                    "idenfyVerificationStatus": nullable_string,
                    "idenfyScanRef": { "type": "string" },
                    "verificationFailureReason": { "type": "string" },
                    "createdByFlow": { "type": "string", "enum": ["gov-id", "clean-hands"] },
                    "createdBySessionId": { "type": "string" },
                    "createdAt": { "type": "string", "format": "date-time" },
                    "recreationCount": { "type": "integer" }
                }},
                "WebhookAck": { "type": "object", "properties": { "received": { "type": "boolean" }, "outcome": { "type": "string", "enum": ["applied", "duplicate", "superseded", "ignored"] } } },
                "CreateRequest": { "type": "object", "required": ["sigDigest", "flow"], "properties": { "sigDigest": { "type": "string" }, "flow": { "type": "string", "enum": ["gov-id", "clean-hands"] } } },
                "Created": { "type": "object", "properties": {
                    "sessionId": { "type": "string" },
                    "idenfySessionId": { "type": "string" },
                    "flow": { "type": "string" },
                    "reused": { "type": "boolean" },
                    "replayed": { "type": "boolean" },
                    "idenfy": { "$ref": "#/components/schemas/SessionView" }
                }}
            }
        }
    })
}
