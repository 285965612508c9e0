//! Turns HTTP outcomes into `IdenfyError`s: status codes and iDenfy's `{identifier, message}`
//! body into an `IdenfyErrorKind`, reqwest failures into `Timeout`/`Transport`.

use idenfy_core::{IdenfyError, IdenfyErrorKind};
use reqwest::StatusCode;

/// Longest iDenfy `message` we keep; the rest of a body never reaches our errors or logs.
const MAX_MESSAGE_CHARS: usize = 200;
/// Identifiers are short constants; anything longer is cut.
const MAX_IDENTIFIER_CHARS: usize = 64;

/// The kind of a non-2xx answer.
pub(crate) fn classify(
    status: StatusCode,
    identifier: Option<&str>,
    message: Option<&str>,
) -> IdenfyErrorKind {
    let code = status.as_u16();
    let token_limit = message.is_some_and(|m| m.to_ascii_lowercase().contains("token limit"));
    match (code, identifier) {
        (429, _) | (_, Some("TOO_MANY_REQUESTS")) => IdenfyErrorKind::RateLimited,
        (401 | 403, _) | (400, Some("UNAUTHORIZED")) => IdenfyErrorKind::Unauthorized,
        (402, _) => IdenfyErrorKind::Money,
        // Only the token-limit refusal is about money; other PERMISSIONS_ERRORs (e.g. a
        // custom callback URL not allowed) are our request's fault.
        (400, _) if token_limit => IdenfyErrorKind::Money,
        // The 2021 docs return every error as 400; INTERNAL_ERROR means "retry".
        (400, Some("INTERNAL_ERROR")) => IdenfyErrorKind::Server,
        (409, _) => IdenfyErrorKind::Conflict,
        (404, _) => IdenfyErrorKind::NotFound,
        (400..=499, _) => IdenfyErrorKind::InvalidRequest,
        (500..=599, _) => IdenfyErrorKind::Server,
        // 1xx/3xx (redirects are not followed): the base URL points somewhere unexpected.
        _ => IdenfyErrorKind::UnexpectedPayload,
    }
}

/// An error for a non-2xx answer. Only iDenfy's `identifier` and (truncated) `message` are
/// read from the body; a body that is not iDenfy's JSON shape is ignored.
pub(crate) fn from_response(
    status: StatusCode,
    body: &[u8],
    source: Option<reqwest::Error>,
) -> IdenfyError {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let field = |name: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(name))
            .and_then(serde_json::Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let identifier = field("identifier");
    let message = field("message");
    let kind = classify(status, identifier, message);
    let message = match message {
        Some(m) => truncate(m, MAX_MESSAGE_CHARS),
        None => format!("HTTP {status}"),
    };
    IdenfyError {
        kind,
        http_status: Some(status.as_u16()),
        identifier: identifier.map(|i| truncate(i, MAX_IDENTIFIER_CHARS)),
        message,
        source: source.map(|e| Box::new(e.without_url()) as _),
    }
}

/// An error for a request that got no usable HTTP answer.
pub(crate) fn from_reqwest(err: reqwest::Error) -> IdenfyError {
    // A connect error first: a connect timeout also counts as a timeout, but nothing was sent.
    let (kind, message) = if err.is_connect() {
        (IdenfyErrorKind::Connect, "could not connect")
    } else if err.is_timeout() {
        (IdenfyErrorKind::Timeout, "no answer in time")
    } else if err.is_body() || err.is_decode() {
        (
            IdenfyErrorKind::Transport,
            "could not read the response body",
        )
    } else {
        (IdenfyErrorKind::Transport, "transport error")
    };
    IdenfyError {
        kind,
        http_status: err.status().map(|s| s.as_u16()),
        identifier: None,
        message: message.to_owned(),
        source: Some(Box::new(err.without_url())),
    }
}

/// The retry budget of a call ran out while an attempt was still waiting for its answer.
pub(crate) fn budget_spent(budget: std::time::Duration) -> IdenfyError {
    IdenfyError {
        kind: IdenfyErrorKind::Timeout,
        http_status: None,
        identifier: None,
        message: format!(
            "no answer within the {} ms retry budget",
            budget.as_millis()
        ),
        source: None,
    }
}

/// A 2xx whose body we cannot use.
pub(crate) fn unexpected_payload(status: StatusCode, message: impl Into<String>) -> IdenfyError {
    IdenfyError {
        kind: IdenfyErrorKind::UnexpectedPayload,
        http_status: Some(status.as_u16()),
        identifier: None,
        message: message.into(),
        source: None,
    }
}

/// At most `max` characters, with an ellipsis when cut.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(code: u16, identifier: Option<&str>, message: Option<&str>) -> IdenfyErrorKind {
        classify(
            StatusCode::from_u16(code).expect("valid code"),
            identifier,
            message,
        )
    }

    #[test]
    fn classification_follows_the_documented_table() {
        use IdenfyErrorKind::*;
        assert_eq!(
            kind(401, None, Some("Invalid authorization credentials")),
            Unauthorized
        );
        assert_eq!(kind(403, None, Some("Partner inactive")), Unauthorized);
        assert_eq!(kind(402, None, None), Money);
        assert_eq!(
            kind(
                400,
                Some("PERMISSIONS_ERROR"),
                Some("Partner reached token limit.")
            ),
            Money
        );
        assert_eq!(
            kind(400, Some("OTHER"), Some("Partner reached Token Limit")),
            Money
        );
        assert_eq!(
            kind(
                400,
                Some("PERMISSIONS_ERROR"),
                Some("You are not allowed to use a custom callback url.")
            ),
            InvalidRequest,
            "a permissions refusal that is not about credit needs a config fix, not money"
        );
        assert_eq!(kind(429, None, None), RateLimited);
        assert_eq!(kind(400, Some("TOO_MANY_REQUESTS"), None), RateLimited);
        assert_eq!(kind(409, None, Some("Client ID already exists")), Conflict);
        assert_eq!(kind(404, None, None), NotFound);
        assert_eq!(kind(400, Some("BAD_VALUE"), None), InvalidRequest);
        assert_eq!(kind(422, None, None), InvalidRequest);
        assert_eq!(kind(400, Some("INTERNAL_ERROR"), None), Server);
        assert_eq!(kind(500, None, None), Server);
        assert_eq!(kind(503, None, None), Server);
        assert_eq!(kind(302, None, None), UnexpectedPayload);
    }

    #[test]
    fn messages_are_truncated_and_bodies_never_copied() {
        let long = "x".repeat(500);
        let body = serde_json::json!({"identifier": "BAD_VALUE", "message": long}).to_string();
        let err = from_response(StatusCode::BAD_REQUEST, body.as_bytes(), None);
        assert_eq!(err.message.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert_eq!(err.identifier.as_deref(), Some("BAD_VALUE"));

        let err = from_response(
            StatusCode::BAD_GATEWAY,
            b"<html>secret upstream page</html>",
            None,
        );
        assert_eq!(err.kind, IdenfyErrorKind::Server);
        assert_eq!(err.message, "HTTP 502 Bad Gateway");
        assert_eq!(err.identifier, None);
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate("ąčęėį", 2), "ąč…");
        assert_eq!(truncate("abc", 3), "abc");
    }
}
