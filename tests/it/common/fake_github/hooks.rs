//! Each App's webhook and its delivery log, as GitHub keeps them: a delivery is a signed
//! POST of an event to the App's webhook URL, logged with the answer's status (0 when
//! there was none) under a new id; ids grow over all Apps. The log is read newest first
//! (`GET /app/hook/deliveries`, `per_page` at most 100, `cursor` from the `Link` header's
//! `rel="next"`), and a logged delivery is sent again on request
//! (`POST /app/hook/deliveries/{id}/attempts`, 202): the same event, guid and payload, as a
//! new delivery marked `redelivery`, made after the answer. Both need the App's JWT, and an
//! App sees only its own log.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{Answer, FakeGitHub, FakeState, invalid, not_found};
use crate::common::sign;

/// The first delivery's id.
const FIRST_DELIVERY_ID: u64 = 90_000_001;
/// GitHub counts a delivery not answered within 10 s as failed.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// One delivery in an App's log.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedDelivery {
    pub id: u64,
    pub app: u64,
    pub guid: String,
    pub event: String,
    pub action: Option<String>,
    pub delivered_at: DateTime<Utc>,
    /// The webhook's answer; 0 when it gave none.
    pub status_code: u16,
    pub redelivery: bool,
    /// What was sent, for a redelivery; `None` for a delivery logged by hand.
    payload: Option<Vec<u8>>,
}

/// An event to send to an App's webhook.
#[derive(Debug, Clone)]
struct Outgoing {
    app: u64,
    guid: String,
    event: String,
    action: Option<String>,
    payload: Vec<u8>,
    redelivery: bool,
}

#[derive(Debug, Default)]
pub(super) struct Hooks {
    /// Each App's webhook: its URL and secret.
    webhooks: std::collections::HashMap<u64, (String, String)>,
    log: Vec<LoggedDelivery>,
    next_id: u64,
    /// Redeliveries asked for, to send once the answer is out.
    outbox: Vec<Outgoing>,
    /// Deliveries being sent now.
    sending: usize,
    /// Redeliveries asked for stay in the outbox while this is set.
    held: bool,
    /// The `Link` header of the log page being answered.
    pub link: Option<String>,
}

impl FakeGitHub {
    /// Points App `app`'s webhook at `url`, signing with `secret`.
    pub fn set_webhook(&self, app: u64, url: &str, secret: &str) {
        self.lock()
            .hooks
            .webhooks
            .insert(app, (url.to_string(), secret.to_string()));
    }

    /// Delivers a `workflow_job` event to App `app`'s webhook as GitHub does (a new guid),
    /// logs it, and answers the guid and the webhook's status (0 for none).
    pub async fn deliver(&self, app: u64, body: Vec<u8>) -> (String, u16) {
        let guid = uuid::Uuid::new_v4().to_string();
        let status = self.deliver_as(app, &guid, body).await;
        (guid, status)
    }

    /// [`FakeGitHub::deliver`] with the event's guid given: the same event delivered to
    /// several GitHubs (one per worker, in a test that tells their calls apart).
    pub async fn deliver_as(&self, app: u64, guid: &str, body: Vec<u8>) -> u16 {
        let action = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["action"].as_str().map(str::to_string));
        let outgoing = Outgoing {
            app,
            guid: guid.to_string(),
            event: "workflow_job".to_string(),
            action,
            payload: body,
            redelivery: false,
        };
        self.lock().hooks.sending += 1;
        send(self.state.clone(), outgoing).await
    }

    /// Logs a delivery by hand, as if made at `delivered_at` and answered `status_code`;
    /// answers its id. A redelivery of it has no payload to send: it fails (status 0).
    pub fn log_delivery(
        &self,
        app: u64,
        guid: &str,
        action: &str,
        status_code: u16,
        delivered_at: DateTime<Utc>,
    ) -> u64 {
        let mut state = self.lock();
        state.hooks.record(LoggedDelivery {
            id: 0,
            app,
            guid: guid.to_string(),
            event: "workflow_job".to_string(),
            action: Some(action.to_string()),
            delivered_at,
            status_code,
            redelivery: false,
            payload: None,
        })
    }

    /// App `app`'s delivery log, oldest first.
    pub fn delivery_log(&self, app: u64) -> Vec<LoggedDelivery> {
        let state = self.lock();
        state
            .hooks
            .log
            .iter()
            .filter(|d| d.app == app)
            .cloned()
            .collect()
    }

    /// Holds the redeliveries asked for from now on (they are neither made nor logged),
    /// until released: GitHub's delivery still under way when the next pass reads the log.
    pub fn hold_redeliveries(&self, held: bool) {
        self.lock().hooks.held = held;
        if !held {
            send_outbox(&self.state);
        }
    }

    /// Waits until every delivery and redelivery asked for has been made and logged.
    pub async fn deliveries_settled(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            {
                let state = self.lock();
                if state.hooks.sending == 0 && state.hooks.outbox.is_empty() {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "deliveries still being sent after 30 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Hooks {
    fn record(&mut self, mut delivery: LoggedDelivery) -> u64 {
        self.next_id = self.next_id.max(FIRST_DELIVERY_ID - 1) + 1;
        delivery.id = self.next_id;
        self.log.push(delivery);
        self.next_id
    }
}

impl FakeState {
    /// `GET /app/hook/deliveries` for App `app`: a page of its log, newest first.
    pub(super) fn list_deliveries(&mut self, app: u64, query: Option<&str>) -> Answer {
        let mut per_page = 30;
        let mut cursor = None;
        for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match key.as_ref() {
                "per_page" => match value.parse::<usize>() {
                    Ok(n) if (1..=100).contains(&n) => per_page = n,
                    _ => return invalid("per_page must be between 1 and 100"),
                },
                "cursor" => match value
                    .strip_prefix("v1_")
                    .and_then(|id| id.parse::<u64>().ok())
                {
                    Some(id) => cursor = Some(id),
                    None => return invalid("Invalid cursor"),
                },
                // GitHub's other filter; dockhand sends none.
                "status" if matches!(value.as_ref(), "success" | "failure") => {}
                _ => return invalid(&format!("Unexpected query parameter `{key}`")),
            }
        }
        let mut mine: Vec<&LoggedDelivery> = self
            .hooks
            .log
            .iter()
            .filter(|d| d.app == app && cursor.is_none_or(|c| d.id <= c))
            .collect();
        mine.sort_by_key(|d| std::cmp::Reverse(d.id));
        let page: Vec<Value> = mine.iter().take(per_page).map(|d| item(d)).collect();
        self.hooks.link = mine.get(per_page).map(|next| {
            format!(
                "<{}/app/hook/deliveries?per_page={per_page}&cursor=v1_{}>; rel=\"next\"",
                self.url, next.id
            )
        });
        (StatusCode::OK, Value::Array(page))
    }

    /// `POST /app/hook/deliveries/{id}/attempts` for App `app`: sends the delivery's event
    /// again once the answer is out.
    pub(super) fn redeliver(&mut self, app: u64, id: &str) -> Answer {
        let Some(delivery) = id
            .parse::<u64>()
            .ok()
            .and_then(|id| self.hooks.log.iter().find(|d| d.id == id && d.app == app))
        else {
            return not_found();
        };
        let outgoing = Outgoing {
            app,
            guid: delivery.guid.clone(),
            event: delivery.event.clone(),
            action: delivery.action.clone(),
            payload: delivery.payload.clone().unwrap_or_default(),
            redelivery: true,
        };
        self.hooks.outbox.push(outgoing);
        (StatusCode::ACCEPTED, json!({}))
    }
}

/// Sends the redeliveries asked for by the request just answered.
pub(super) fn send_outbox(state: &Arc<Mutex<FakeState>>) {
    let outbox = {
        let mut state = state.lock().unwrap();
        if state.hooks.held {
            return;
        }
        let outbox = std::mem::take(&mut state.hooks.outbox);
        state.hooks.sending += outbox.len();
        outbox
    };
    for outgoing in outbox {
        tokio::spawn(send(state.clone(), outgoing));
    }
}

/// Makes one delivery and logs it; answers the webhook's status (0 for none). The caller
/// has counted it in `sending`.
async fn send(state: Arc<Mutex<FakeState>>, outgoing: Outgoing) -> u16 {
    let delivered_at = Utc::now();
    let webhook = state
        .lock()
        .unwrap()
        .hooks
        .webhooks
        .get(&outgoing.app)
        .cloned();
    let status = match webhook {
        Some((url, secret)) if !outgoing.payload.is_empty() => {
            let answer = reqwest::Client::new()
                .post(&url)
                .timeout(DELIVERY_TIMEOUT)
                .header("x-github-event", &outgoing.event)
                .header("x-github-delivery", &outgoing.guid)
                .header("x-hub-signature-256", sign(&secret, &outgoing.payload))
                .header("content-type", "application/json")
                .body(outgoing.payload.clone())
                .send()
                .await;
            answer.map_or(0, |a| a.status().as_u16())
        }
        _ => 0,
    };
    let mut state = state.lock().unwrap();
    state.hooks.record(LoggedDelivery {
        id: 0,
        app: outgoing.app,
        guid: outgoing.guid,
        event: outgoing.event,
        action: outgoing.action,
        delivered_at,
        status_code: status,
        redelivery: outgoing.redelivery,
        payload: Some(outgoing.payload).filter(|p| !p.is_empty()),
    });
    state.hooks.sending -= 1;
    status
}

/// A log entry as GitHub lists it.
fn item(d: &LoggedDelivery) -> Value {
    json!({
        "id": d.id,
        "guid": d.guid,
        "delivered_at": d.delivered_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "redelivery": d.redelivery,
        "duration": 0.01,
        "status": if (200..300).contains(&d.status_code) { "OK".to_string() }
                  else if d.status_code == 0 { "failed to connect".to_string() }
                  else { format!("Invalid HTTP Response: {}", d.status_code) },
        "status_code": d.status_code,
        "event": d.event,
        "action": d.action,
        "installation_id": null,
        "repository_id": null,
    })
}
