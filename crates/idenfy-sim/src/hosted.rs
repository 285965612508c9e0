//! The hosted-UI stand-in: plain HTML pages (no JavaScript) where a person or a test opens a
//! token and approves, denies, marks suspected or abandons the verification.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::server::Inner;
use crate::state::{Outcome, SimStatus};

pub(crate) fn routes() -> Router<Arc<Inner>> {
    Router::new()
        .route("/api/v2/redirect", get(page))
        .route("/api/v2/redirect/decide", post(decide))
        .route("/result", get(result))
}

/// Escapes text for HTML element content and quoted attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} - idenfy-sim</title>\
         <style>body{{font-family:sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem}}\
         button{{font-size:1rem;margin:.25rem;padding:.5rem 1rem}}dt{{font-weight:bold}}</style>\
         </head><body><h1>{title}</h1>\n{body}\n<p><small>idenfy-sim: a local stand-in for \
         iDenfy's hosted verification UI.</small></p></body></html>\n",
        title = escape(title),
    )
}

fn expired_page(status: StatusCode) -> Response {
    let body = "<p id=\"expired\">This verification session has expired or does not exist. \
                Please go back and start again.</p>";
    (status, Html(layout("Session expired", body))).into_response()
}

async fn page(
    State(inner): State<Arc<Inner>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(auth_token) = query.get("authToken") else {
        return expired_page(StatusCode::NOT_FOUND);
    };
    let Some(scan_ref) = inner.state().scan_ref_by_token.get(auth_token).cloned() else {
        return expired_page(StatusCode::NOT_FOUND);
    };
    // Opening starts `sessionLength`; an expired token is noticed (and notified) first.
    inner.open(auth_token);
    let Some(session) = inner.session(&scan_ref) else {
        return expired_page(StatusCode::NOT_FOUND);
    };
    if session.status == SimStatus::Expired {
        return expired_page(StatusCode::OK);
    }
    let mut body = String::new();
    let _ = writeln!(
        body,
        "<dl><dt>scanRef</dt><dd id=\"scanRef\">{}</dd><dt>clientId</dt><dd>{}</dd>\
         <dt>Status</dt><dd id=\"status\">{}</dd><dt>Session ends</dt><dd>{}</dd></dl>",
        escape(&session.scan_ref),
        escape(&session.client_id),
        escape(session.status.as_str()),
        escape(&session.expires_at.to_rfc3339()),
    );
    if session.status == SimStatus::Active {
        let token = escape(&session.auth_token);
        let _ = writeln!(
            body,
            "<form method=\"post\" action=\"/api/v2/redirect/decide\">\
             <input type=\"hidden\" name=\"authToken\" value=\"{token}\">\
             <button type=\"submit\" name=\"outcome\" value=\"approve\">Approve</button>\
             <button type=\"submit\" name=\"outcome\" value=\"deny\">Deny</button>\
             <button type=\"submit\" name=\"outcome\" value=\"suspect\">Mark suspected</button>\
             <button type=\"submit\" name=\"outcome\" value=\"abandon\">Abandon</button>\
             </form>"
        );
    } else {
        body.push_str("<p>This verification is finished; nothing more to do here.</p>\n");
    }
    Html(layout("Identity verification", &body)).into_response()
}

#[derive(Debug, Deserialize)]
struct DecideForm {
    #[serde(rename = "authToken")]
    auth_token: String,
    outcome: Outcome,
}

/// Applies the button pressed, then sends the browser where iDenfy would: `successUrl` for an
/// approval, `errorUrl` for a denial or suspicion, `unverifiedUrl` when abandoned.
async fn decide(State(inner): State<Arc<Inner>>, Form(form): Form<DecideForm>) -> Response {
    let Some(scan_ref) = inner
        .state()
        .scan_ref_by_token
        .get(&form.auth_token)
        .cloned()
    else {
        return expired_page(StatusCode::NOT_FOUND);
    };
    if !inner.decide(&scan_ref, form.outcome) {
        return match inner.session(&scan_ref) {
            Some(s) if s.status == SimStatus::Expired => expired_page(StatusCode::OK),
            _ => (
                StatusCode::CONFLICT,
                Html(layout(
                    "Already finished",
                    "<p>This verification already has a result.</p>",
                )),
            )
                .into_response(),
        };
    }
    let state = inner.state();
    let Some(session) = state.sessions.get(&scan_ref) else {
        return expired_page(StatusCode::NOT_FOUND);
    };
    let target = match form.outcome {
        Outcome::Approve => &session.success_url,
        Outcome::Deny | Outcome::Suspect => &session.error_url,
        Outcome::Abandon => &session.unverified_url,
    };
    Redirect::to(target).into_response()
}

/// Stand-in for iDenfy's default result pages (`?status=success|fail|unverified`).
async fn result(Query(query): Query<HashMap<String, String>>) -> Response {
    let status = query.get("status").map(String::as_str).unwrap_or("unknown");
    let body = format!(
        "<p>Verification result: <strong id=\"result\">{}</strong></p>",
        escape(status)
    );
    (
        [(header::CACHE_CONTROL, "no-store")],
        Html(layout("Verification finished", &body)),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn escape_covers_markup_and_both_quotes() {
        assert_eq!(
            super::escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
