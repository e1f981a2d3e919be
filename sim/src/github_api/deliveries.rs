//! An App's webhook delivery log and its redeliveries, as GitHub serves them to the App
//! (a JWT; an installation token is refused): `GET /app/hook/deliveries`, newest first,
//! `per_page` (1–100, 30 by default) and an opaque `cursor` from the `Link` header's
//! `rel="next"`, optionally `status=success|failure`; and
//! `POST /app/hook/deliveries/{delivery_id}/attempts`, answered `202 {}` and sent soon
//! after, or 404 for a delivery not in the App's log. Each App sees only its own log.

use axum::http::{StatusCode, Uri};
use serde_json::{Value, json};

use super::auth::Auth;
use super::endpoints::{invalid, unauthorized};
use super::paging::{cursor_link, pagination, query_pairs};
use super::{Answer, GitHubApi, message};
use crate::webhooks::log::{BadCursor, StatusFilter};

/// A page of the calling App's log, and its `Link` header.
pub(super) fn list(api: &GitHubApi, auth: Auth, uri: &Uri, host: &str) -> (Answer, Option<String>) {
    let Auth::App(app) = auth else {
        return (unauthorized(), None);
    };
    let query = uri.query().unwrap_or_default();
    let (per_page, _) = match pagination(query, &["per_page", "cursor", "status"]) {
        Ok(pages) => pages,
        Err(answer) => return (answer, None),
    };
    let pairs = query_pairs(query);
    let value = |key: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let filter = match value("status") {
        None => None,
        Some("success") => Some(StatusFilter::Success),
        Some("failure") => Some(StatusFilter::Failure),
        Some(_) => {
            let text = "Invalid request: status must be one of success, failure";
            return (invalid(text), None);
        }
    };
    let page = api
        .webhooks
        .log
        .lock()
        .unwrap()
        .page(app, per_page, value("cursor"), filter);
    match page {
        Err(BadCursor) => (message(StatusCode::BAD_REQUEST, "Invalid cursor"), None),
        Ok(page) => {
            let link = cursor_link(host, uri.path(), query, page.next.as_deref());
            let deliveries = page.deliveries.iter().map(|d| d.json()).collect();
            ((StatusCode::OK, Value::Array(deliveries)), link)
        }
    }
}

/// Asks for delivery `id` of the calling App's log again.
pub(super) fn redeliver(api: &GitHubApi, auth: Auth, id: &str) -> Answer {
    let Auth::App(app) = auth else {
        return unauthorized();
    };
    match id.parse() {
        Ok(id) if api.webhooks.redeliver(app, id) => (StatusCode::ACCEPTED, json!({})),
        _ => message(StatusCode::NOT_FOUND, "Not Found"),
    }
}
