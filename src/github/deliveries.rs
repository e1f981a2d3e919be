//! An App's webhook delivery log: reading it a page at a time, and asking GitHub to deliver
//! one again. Both are App calls (JWT): each App has its own webhook and its own log.

use chrono::{DateTime, Utc};
use http::HeaderMap;
use serde::Deserialize;

use super::request::{self, Endpoint, Method};
use super::{AppClient, GitHubApp, GitHubError, PER_PAGE};

/// One attempt to deliver an event to the App's webhook, as GitHub logged it. A
/// redelivery is a new delivery (a new `id`) of the same event (the same `guid`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct HookDelivery {
    pub id: u64,
    /// The event's id (`X-GitHub-Delivery`), shared by all its deliveries.
    pub guid: String,
    pub delivered_at: DateTime<Utc>,
    #[serde(default)]
    pub redelivery: bool,
    /// The webhook's answer; 0 when there was none (no connection, or over 10 s).
    #[serde(default)]
    pub status_code: u16,
    pub event: String,
    #[serde(default)]
    pub action: Option<String>,
}

impl HookDelivery {
    /// Whether the webhook took the event: a 2xx answer.
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.status_code)
    }
}

/// One page of the log, newest first, and the cursor of the next (older) page, if any.
#[derive(Debug, Clone, Default)]
pub struct DeliveryPage {
    pub deliveries: Vec<HookDelivery>,
    pub next: Option<String>,
}

impl AppClient {
    /// A page of the App's delivery log (`GET /app/hook/deliveries`), 100 deliveries,
    /// newest first: the first page without `cursor`, then the one each page names.
    #[tracing::instrument(skip_all, fields(github.app = self.inner.app_id))]
    pub(super) async fn hook_deliveries(
        &self,
        cursor: Option<&str>,
    ) -> Result<DeliveryPage, GitHubError> {
        let query = {
            let mut query = form_urlencoded::Serializer::new(String::new());
            query.append_pair("per_page", &PER_PAGE.to_string());
            if let Some(cursor) = cursor {
                query.append_pair("cursor", cursor);
            }
            query.finish()
        };
        let path = format!("/app/hook/deliveries?{query}");
        let answer = request::send(
            self.app_caller(),
            self.inner.timeout,
            Endpoint::HookDeliveries,
            Method::Get,
            &path,
            None,
        )
        .await?;
        Ok(DeliveryPage {
            deliveries: answer.json()?,
            next: next_cursor(&answer.headers),
        })
    }

    /// Asks GitHub to deliver a logged delivery's event again
    /// (`POST /app/hook/deliveries/{id}/attempts`, answered 202): a new delivery of the
    /// same event, with the same guid, made shortly after.
    #[tracing::instrument(skip_all, fields(github.app = self.inner.app_id, github.delivery = delivery))]
    pub(super) async fn redeliver(&self, delivery: u64) -> Result<(), GitHubError> {
        let path = format!("/app/hook/deliveries/{delivery}/attempts");
        request::send(
            self.app_caller(),
            self.inner.timeout,
            Endpoint::Redeliver,
            Method::Post(&serde_json::json!({})),
            &path,
            None,
        )
        .await?;
        Ok(())
    }
}

impl GitHubApp {
    /// A page of App `app_id`'s delivery log; see [`AppClient::hook_deliveries`].
    pub async fn hook_deliveries(
        &self,
        app_id: u64,
        cursor: Option<&str>,
    ) -> Result<DeliveryPage, GitHubError> {
        let app = self.app_by_id(app_id).await.ok_or(GitHubError::NotFound)?;
        app.hook_deliveries(cursor).await
    }

    /// Asks App `app_id`'s webhook for a logged delivery again; see
    /// [`AppClient::redeliver`].
    pub async fn redeliver(&self, app_id: u64, delivery: u64) -> Result<(), GitHubError> {
        let app = self.app_by_id(app_id).await.ok_or(GitHubError::NotFound)?;
        app.redeliver(delivery).await
    }
}

/// The `cursor` of the `rel="next"` link in a `Link` header, e.g.
/// `<https://api.github.com/app/hook/deliveries?per_page=100&cursor=v1_42>; rel="next"`.
fn next_cursor(headers: &HeaderMap) -> Option<String> {
    let link = headers.get(http::header::LINK)?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let next = params
            .split(';')
            .any(|p| p.trim().eq_ignore_ascii_case("rel=\"next\""));
        if !next {
            return None;
        }
        let url = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        let (_, query) = url.split_once('?')?;
        form_urlencoded::parse(query.as_bytes())
            .find(|(key, _)| key == "cursor")
            .map(|(_, value)| value.into_owned())
            .filter(|cursor| !cursor.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::LINK, value.parse().unwrap());
        headers
    }

    #[test]
    fn the_next_cursor_is_read_from_the_link_header() {
        let both = link(
            "<https://api.github.com/app/hook/deliveries?per_page=100&cursor=v1_9%2B1>; rel=\"next\", \
             <https://api.github.com/app/hook/deliveries?per_page=100>; rel=\"first\"",
        );
        assert_eq!(next_cursor(&both).as_deref(), Some("v1_9+1"));
        let first_only =
            link("<https://api.github.com/app/hook/deliveries?per_page=100>; rel=\"first\"");
        assert_eq!(next_cursor(&first_only), None);
        assert_eq!(next_cursor(&HeaderMap::new()), None);
        let no_cursor = link("<https://api.github.com/app/hook/deliveries?page=2>; rel=\"next\"");
        assert_eq!(next_cursor(&no_cursor), None);
    }

    #[test]
    fn a_delivery_parses_as_github_documents_it_and_only_2xx_succeeded() {
        let failed: HookDelivery = serde_json::from_value(serde_json::json!({
            "id": 42, "guid": "58474f00-b361-11eb-836d-0e4f3503ccbe",
            "delivered_at": "2021-05-12T20:33:44Z", "redelivery": false, "duration": 0.03,
            "status": "failed to connect", "status_code": 0, "event": "workflow_job",
            "action": "queued", "installation_id": 123, "repository_id": 456
        }))
        .unwrap();
        assert_eq!(failed.id, 42);
        assert!(!failed.succeeded());
        for (code, ok) in [
            (200, true),
            (202, true),
            (299, true),
            (300, false),
            (503, false),
        ] {
            let delivery = HookDelivery {
                status_code: code,
                ..failed.clone()
            };
            assert_eq!(delivery.succeeded(), ok, "{code}");
        }
    }
}
