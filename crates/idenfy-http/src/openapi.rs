//! The OpenAPI 3.1 document served at `/openapi.json`, generated from the code: each route's
//! `#[utoipa::path]` (operation id, parameters, every status it answers) next to its handler,
//! and the schemas from the types the handlers answer with (`utoipa::ToSchema`, also on the
//! domain types behind idenfy-core's `openapi` feature).
//!
//! What one handler annotation cannot say is added here, once: the `/sandbox` copies of the
//! per-environment routes (same handlers, mounted twice), the `x-request-id` header every
//! answer carries (a layer of the router), the headers that are always sent, and the
//! service-token scheme. `tests/it/openapi.rs` checks real answers against the result.

use std::sync::LazyLock;

use serde_json::Value;
use utoipa::{
    Modify, OpenApi,
    openapi::{
        Content, Object, PathItem, Ref, RefOr, Required, ResponseBuilder, Schema, Type,
        extensions::Extensions,
        header::HeaderBuilder,
        path::{Operation, ParameterIn},
        schema::SchemaType,
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};

use crate::routes;

/// Name of the internal routes' security scheme.
pub const SERVICE_TOKEN: &str = "serviceToken";

/// Tags of the routes that exist once per environment: also served under [`SANDBOX`].
const PER_ENVIRONMENT_TAGS: [&str; 2] = ["user", "webhooks"];

/// Where the sandbox environment's routes are mounted.
pub const SANDBOX: &str = "/sandbox";

/// Headers sent with every answer of an operation's status, beyond `x-request-id`:
/// (operation id, status, header).
const ALWAYS_SENT: &[(&str, &str, &str)] = &[("createSession", "409", "Retry-After")];

/// Operations whose request body may be left out.
const OPTIONAL_BODIES: &[&str] = &["ensureIdenfySession"];

#[derive(OpenApi)]
#[openapi(
    info(
        title = "idenfy-sessions",
        description = "iDenfy verification sessions with expired-session recovery.\n\n\
            Every error is JSON `{\"error\": \"...\"}` (the webhook's store failure aside), also \
            for unknown routes (404) and wrong methods (405). Every answer carries `x-request-id`."
    ),
    paths(
        routes::session_status,
        routes::status_v2,
        routes::list,
        routes::webhook,
        routes::create,
        routes::ensure,
        routes::healthz,
        routes::readyz,
        routes::metrics,
        routes::openapi,
    ),
    tags(
        (name = "user", description = "The browser's routes, identified by `X-Holo-User-Id`. \
            Each is also served under `/sandbox` (sandbox collections and credentials; 404 when \
            the sandbox is not configured). Shed with 503 when over the replica's budget."),
        (name = "webhooks", description = "iDenfy's callbacks, also under `/sandbox`. Shed with \
            503 when over the replica's budget for priority work."),
        (name = "internal", description = "Service-to-service routes, with the internal service \
            token. Shed with 503 when over the replica's budget for priority work."),
        (name = "operations", description = "Probes, metrics and this document; never shed."),
    ),
    modifiers(&Finish),
)]
struct ApiDoc;

/// The document, as a typed value.
pub fn spec() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document, as served (built once).
pub fn document() -> Value {
    static DOCUMENT: LazyLock<Value> = LazyLock::new(|| {
        serde_json::to_value(spec()).expect("the OpenAPI document serialises to JSON")
    });
    DOCUMENT.clone()
}

/// The additions described in the module docs.
struct Finish;

impl Modify for Finish {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                SERVICE_TOKEN,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(
                            "The internal service token (`INTERNAL_SERVICE_TOKEN`)",
                        ))
                        .build(),
                ),
            );
        let paths = &mut openapi.paths.paths;
        for item in paths.values_mut() {
            operations(item).for_each(refine);
        }
        add_sandbox_copies(paths);
        for item in paths.values_mut() {
            operations(item).for_each(add_request_id);
        }
    }
}

/// The operations of a path item.
fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// `/sandbox/...` for each per-environment path: the same operation, its own operation id, and
/// a 404 for an unconfigured sandbox.
fn add_sandbox_copies(paths: &mut utoipa::openapi::path::PathsMap<String, PathItem>) {
    let copies: Vec<(String, PathItem)> = paths
        .iter()
        .filter_map(|(path, item)| {
            let mut item = item.clone();
            let per_environment = operations(&mut item).any(|operation| {
                operation
                    .tags
                    .iter()
                    .flatten()
                    .any(|tag| PER_ENVIRONMENT_TAGS.contains(&tag.as_str()))
            });
            per_environment.then(|| {
                operations(&mut item).for_each(sandbox_operation);
                (format!("{SANDBOX}{path}"), item)
            })
        })
        .collect();
    paths.extend(copies);
}

fn sandbox_operation(operation: &mut Operation) {
    if let Some(id) = &mut operation.operation_id {
        let mut chars = id.chars();
        let capitalised: String = chars
            .next()
            .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
            .unwrap_or_default();
        *id = format!("sandbox{capitalised}");
    }
    if let Some(summary) = &mut operation.summary {
        summary.push_str(" (sandbox)");
    }
    const UNCONFIGURED: &str = "`Sandbox environment is not configured`";
    let responses = &mut operation.responses.responses;
    match responses.get_mut("404") {
        Some(RefOr::T(response)) => {
            response.description = format!("{}; or {UNCONFIGURED}", response.description);
        }
        _ => {
            responses.insert(
                "404".to_owned(),
                ResponseBuilder::new()
                    .description(UNCONFIGURED)
                    .content(
                        "application/json",
                        Content::new(Some(Ref::from_schema_name("Error"))),
                    )
                    .build()
                    .into(),
            );
        }
    }
}

// utoipa's header type has no `required` field; OpenAPI 3.1 headers take it (they follow the
// Parameter Object), so it goes in through the extension map, which is written as is.
fn required() -> Option<Extensions> {
    Some(Extensions::from_iter([("required", true)]))
}

/// What the path attributes cannot express: the headers of [`ALWAYS_SENT`] are `required`,
/// the bodies of [`OPTIONAL_BODIES`] are not, and an optional header parameter is absent,
/// never `null`.
fn refine(operation: &mut Operation) {
    let id = operation.operation_id.clone().unwrap_or_default();
    for (_, status, name) in ALWAYS_SENT.iter().filter(|(op, _, _)| *op == id) {
        if let Some(RefOr::T(response)) = operation.responses.responses.get_mut(*status)
            && let Some(RefOr::T(header)) = response.headers.get_mut(*name)
        {
            header.extensions = required();
        }
    }
    if OPTIONAL_BODIES.contains(&id.as_str())
        && let Some(RefOr::T(body)) = &mut operation.request_body
    {
        body.required = Some(Required::False);
    }
    for parameter in operation.parameters.iter_mut().flatten() {
        if let RefOr::T(parameter) = parameter
            && parameter.parameter_in == ParameterIn::Header
            && let Some(RefOr::T(Schema::Object(schema))) = &mut parameter.schema
            && let SchemaType::Array(types) = &schema.schema_type
        {
            let types: Vec<Type> = types
                .iter()
                .filter(|t| **t != Type::Null)
                .cloned()
                .collect();
            schema.schema_type = match types.as_slice() {
                [one] => SchemaType::Type(one.clone()),
                _ => SchemaType::Array(types),
            };
        }
    }
}

/// `x-request-id` on every answer (the router's request-id layers set it).
fn add_request_id(operation: &mut Operation) {
    for response in operation.responses.responses.values_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        let mut header = HeaderBuilder::new()
            .schema(Some(Object::with_type(Type::String)))
            .description(Some(
                "The caller's `x-request-id` when it is 1 to 128 visible ASCII characters, \
                 else a new UUID",
            ))
            .build();
        header.extensions = required();
        response
            .headers
            .insert("x-request-id".to_owned(), header.into());
    }
}

/// `GET /docs` (mounted by [`crate::dev_router`]): an API browser over `/openapi.json`. The page is served
/// from here, the browser UI (Scalar) comes from a CDN: the browser must reach
/// cdn.jsdelivr.net. `serve` never mounts it.
pub async fn docs_page() -> axum::response::Html<&'static str> {
    axum::response::Html(DOCS_PAGE)
}

const DOCS_PAGE: &str = r#"<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <title>idenfy-sessions API (dev)</title>
  </head>
  <body>
    <noscript>This page needs JavaScript; the document itself is at /openapi.json.</noscript>
    <div id="app"></div>
    <script src="https://cdn.jsdelivr.net/npm/@scalar/api-reference@1"></script>
    <script>
      Scalar.createApiReference('#app', { url: '/openapi.json' })
    </script>
  </body>
</html>
"#;
