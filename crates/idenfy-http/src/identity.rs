//! Who is calling: the browser's `X-Holo-User-Id` identity and the internal service token.

use axum::{
    extract::FromRequestParts,
    http::{HeaderMap, header, request::Parts},
};
use idenfy_core::SigDigest;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// The identity header of every user route.
pub const IDENTITY_HEADER: &str = "x-holo-user-id";

const IDENTITY_ERROR: &str = "Missing or invalid X-Holo-User-Id header";

/// The caller of a user route: exactly one `X-Holo-User-Id` value, not empty, not only
/// whitespace, not comma-joined. Anything else is 401 (the caller is not identified; id-server
/// answered 400 on its listing route, we answer 401 everywhere and document it).
#[derive(Debug)]
pub struct Caller(pub SigDigest);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        caller(&parts.headers)
            .map(Caller)
            .ok_or_else(|| ApiError::unauthorized(IDENTITY_ERROR))
    }
}

fn caller(headers: &HeaderMap) -> Option<SigDigest> {
    let mut values = headers.get_all(IDENTITY_HEADER).iter();
    let value = values.next()?;
    if values.next().is_some() {
        // Two headers: a proxy would join them with a comma, which is refused too.
        return None;
    }
    SigDigest::parse(value.to_str().ok()?)
}

/// Checks `Authorization: Bearer <token>` against the configured internal service token, in
/// constant time. No token configured → every call is refused (fails closed).
pub fn check_service_token(
    headers: &HeaderMap,
    expected: Option<&SecretString>,
) -> Result<(), ApiError> {
    let refused = || ApiError::unauthorized("Missing or invalid service token");
    let expected = expected
        .map(ExposeSecret::expose_secret)
        .filter(|s| !s.is_empty())
        .ok_or_else(refused)?;
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next().ok_or_else(refused)?;
    if values.next().is_some() {
        return Err(refused());
    }
    // The scheme is case-insensitive (RFC 9110 §11.1); the token is not.
    let given = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or_else(refused)?;
    let same =
        given.len() == expected.len() && bool::from(given.as_bytes().ct_eq(expected.as_bytes()));
    if same { Ok(()) } else { Err(refused()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn identity_needs_exactly_one_usable_value() {
        let mut headers = HeaderMap::new();
        assert!(caller(&headers).is_none());
        headers.insert(IDENTITY_HEADER, HeaderValue::from_static("abc"));
        assert!(caller(&headers).is_some());
        headers.append(IDENTITY_HEADER, HeaderValue::from_static("def"));
        assert!(caller(&headers).is_none());
        for bad in ["", "  ", "a,b"] {
            let mut headers = HeaderMap::new();
            headers.insert(IDENTITY_HEADER, HeaderValue::from_static(bad));
            assert!(caller(&headers).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn service_token_is_compared_exactly() {
        let token = SecretString::from("t".repeat(32));
        let mut headers = HeaderMap::new();
        assert!(check_service_token(&headers, Some(&token)).is_err());
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {}", "t".repeat(32))).expect("ascii"),
        );
        assert!(check_service_token(&headers, Some(&token)).is_ok());
        assert!(check_service_token(&headers, None).is_err());
        assert!(check_service_token(&headers, Some(&SecretString::from("t".repeat(31)))).is_err());
    }

    #[test]
    fn the_scheme_is_case_insensitive_and_the_token_is_not() {
        let token = SecretString::from("t".repeat(32));
        let with = |value: String| {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::AUTHORIZATION,
                HeaderValue::from_str(&value).expect("ascii"),
            );
            check_service_token(&headers, Some(&token))
        };
        for scheme in ["bearer", "BEARER", "Bearer", "bEaReR"] {
            assert!(
                with(format!("{scheme} {}", "t".repeat(32))).is_ok(),
                "{scheme}"
            );
        }
        assert!(with(format!("Bearer {}", "T".repeat(32))).is_err());
        assert!(with(format!("Basic {}", "t".repeat(32))).is_err());
        assert!(with(format!("Bearer{}", "t".repeat(32))).is_err());
    }
}
