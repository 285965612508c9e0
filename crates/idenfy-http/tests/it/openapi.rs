//! The OpenAPI document against the router's source: every route `src/router.rs` defines has
//! its path and method in the document and the document has nothing else (the dev-only
//! `/docs` is the one exception), the router answers each documented operation itself, and
//! every operation has an id and the headers every answer carries. idenfy-app's
//! `tests/it/openapi.rs` checks real answers against the schemas.

use std::collections::BTreeSet;

use axum::{
    body::Body,
    http::{Request, StatusCode},
};
use serde_json::json;

/// A well-formed id nothing is stored under.
const UNKNOWN_ID: &str = "0123456789abcdef01234567";

/// Routes the router defines on purpose without a path in the document.
const UNDOCUMENTED: &[(&str, &str, &str)] = &[(
    "GET",
    "/docs",
    "the API browser of `dev_router`, not part of the API",
)];

/// The (METHOD, path) of every route `src/router.rs` defines; the per-environment ones
/// (those of `fn environment_routes`) also under the sandbox mount.
fn defined_routes() -> BTreeSet<(String, String)> {
    const SOURCE: &str = include_str!("../../src/router.rs");
    let environment = SOURCE
        .find("fn environment_routes")
        .expect("fn environment_routes in src/router.rs");
    let environment =
        environment..environment + SOURCE[environment..].find("\n}\n").expect("its end");
    assert!(
        SOURCE.contains(&format!("\"{}\"", idenfy_http::openapi::SANDBOX)),
        "the sandbox is mounted where the document says"
    );
    let mut routes = BTreeSet::new();
    for (at, _) in SOURCE.match_indices(".route(") {
        let rest = SOURCE[at + ".route(".len()..].trim_start();
        let rest = rest
            .strip_prefix('"')
            .expect(".route(\"literal path\", ...)");
        let end = rest.find('"').expect("end of the path");
        let path = &rest[..end];
        let rest = rest[end + 1..]
            .trim_start()
            .trim_start_matches(',')
            .trim_start();
        let method: String = rest.chars().take_while(char::is_ascii_alphabetic).collect();
        assert!(
            ["get", "post", "put", "patch", "delete"].contains(&method.as_str()),
            "{path}: unexpected method router `{method}`"
        );
        routes.insert((method.to_ascii_uppercase(), path.to_owned()));
        if environment.contains(&at) {
            routes.insert((
                method.to_ascii_uppercase(),
                format!("{}{path}", idenfy_http::openapi::SANDBOX),
            ));
        }
    }
    routes
}

#[tokio::test]
async fn every_route_is_documented_and_every_documented_route_exists() {
    let doc = idenfy_http::openapi::document();
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("path item")
                .keys()
                .map(|method| (method.to_ascii_uppercase(), path.clone()))
        })
        .collect();
    let undocumented: BTreeSet<(String, String)> = UNDOCUMENTED
        .iter()
        .map(|(method, path, _)| ((*method).to_owned(), (*path).to_owned()))
        .collect();
    let defined = defined_routes();
    assert!(
        defined.len() >= 14,
        "the source parse found the routes: {defined:?}"
    );
    let missing: Vec<_> = defined
        .difference(&documented)
        .filter(|route| !undocumented.contains(*route))
        .collect();
    assert!(
        missing.is_empty(),
        "routes without a path in the document: {missing:?}"
    );
    let extra: Vec<_> = documented.difference(&defined).collect();
    assert!(
        extra.is_empty(),
        "documented routes the router does not define: {extra:?}"
    );

    // And the router answers each documented operation itself, not with its fallbacks.
    let world = crate::world();
    for (method, path) in &documented {
        let request = Request::builder()
            .method(method.as_str())
            .uri(path.replace("{id}", UNKNOWN_ID))
            .body(Body::empty())
            .expect("a valid request");
        let (status, body) = crate::send(&world.router, request).await;
        assert!(
            status != StatusCode::METHOD_NOT_ALLOWED && body["error"] != "Not found",
            "{method} {path}: {status} {body}"
        );
    }
}

#[tokio::test]
async fn the_document_names_every_operation_and_its_headers() {
    let doc = idenfy_http::openapi::document();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            let id = operation["operationId"].as_str().unwrap_or_default();
            assert!(!id.is_empty(), "{method} {path}: no operationId");
            assert!(
                ids.insert(id.to_owned()),
                "{method} {path}: operationId {id} repeated"
            );
            for (status, response) in operation["responses"].as_object().expect("responses") {
                assert_eq!(
                    response["headers"]["x-request-id"]["required"], true,
                    "{method} {path} {status}: x-request-id"
                );
                if status == "503" && operation["tags"][0] != "operations" {
                    assert!(
                        response["headers"]["Retry-After"].is_object(),
                        "{method} {path}: a shed request's Retry-After"
                    );
                }
            }
        }
    }
    let create = &doc["paths"]["/internal/sessions"]["post"];
    assert_eq!(
        create["responses"]["409"]["headers"]["Retry-After"]["required"],
        true
    );
    assert_eq!(create["security"], json!([{ "serviceToken": [] }]));
    assert_eq!(
        doc["components"]["securitySchemes"]["serviceToken"],
        json!({
            "type": "http",
            "scheme": "bearer",
            "description": "The internal service token (`INTERNAL_SERVICE_TOKEN`)"
        })
    );
}
