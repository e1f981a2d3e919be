//! GitHub's log of each App's webhook deliveries: every attempt, first deliveries and
//! redeliveries alike, as `GET /app/hook/deliveries` lists them, newest first, a cursor
//! naming where the next page starts. Each App has its own webhook and its own log; ids
//! are GitHub's, one sequence over all Apps, strictly increasing in the order the attempts
//! were logged (when they ended). The log keeps each event's payload, so that a
//! redelivery sends it again, under the same guid.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::model::Webhook;

/// How long GitHub keeps a delivery (github.com: 3 days), by its `delivered_at`.
pub const RETENTION: Duration = Duration::from_secs(3 * 24 * 3600);

/// The first delivery id: as large as GitHub's are.
const FIRST_ID: u64 = 12_000_000_001;

/// How one attempt went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// The webhook answered with this HTTP status.
    Answered(u16),
    /// No connection: nothing listening, or nothing reachable.
    FailedToConnect,
    /// No answer within GitHub's 10 s.
    TimedOut,
}

impl Attempt {
    /// `status_code` as GitHub logs it: 0 when there was no HTTP answer.
    pub fn status_code(self) -> u16 {
        match self {
            Self::Answered(code) => code,
            Self::FailedToConnect | Self::TimedOut => 0,
        }
    }

    /// `status` as GitHub logs it.
    pub fn status(self) -> String {
        match self {
            _ if self.succeeded() => "OK".to_string(),
            Self::Answered(code) => format!("Invalid HTTP Response: {code}"),
            Self::FailedToConnect => "failed to connect".to_string(),
            Self::TimedOut => "timed out".to_string(),
        }
    }

    /// A 2xx answer: GitHub counts anything else as failed.
    pub fn succeeded(self) -> bool {
        matches!(self, Self::Answered(200..=299))
    }
}

/// One attempt, as logged.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: u64,
    /// The event's `X-GitHub-Delivery`, the same for all its attempts.
    pub guid: String,
    /// When the attempt started (wall clock: see [`DeliveryLog::record`]).
    pub delivered_at: DateTime<Utc>,
    /// Not the event's first attempt: its guid was logged before.
    pub redelivery: bool,
    pub duration: Duration,
    pub attempt: Attempt,
    pub action: &'static str,
    pub installation_id: u64,
    pub repository_id: u64,
    /// The job the event is about: the simulator's books, not in GitHub's log.
    pub job: u64,
}

impl Delivery {
    /// The delivery as `GET /app/hook/deliveries` shows it.
    pub fn json(&self) -> Value {
        json!({
            "id": self.id,
            "guid": self.guid,
            "delivered_at": self.delivered_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            "redelivery": self.redelivery,
            "duration": self.duration.as_secs_f64(),
            "status": self.attempt.status(),
            "status_code": self.attempt.status_code(),
            "event": "workflow_job",
            "action": self.action,
            "installation_id": self.installation_id,
            "repository_id": self.repository_id,
        })
    }
}

/// Which deliveries a page lists (`status=success|failure`); all by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    Success,
    Failure,
}

impl StatusFilter {
    fn admits(filter: Option<Self>, delivery: &Delivery) -> bool {
        match filter {
            None => true,
            Some(Self::Success) => delivery.attempt.succeeded(),
            Some(Self::Failure) => !delivery.attempt.succeeded(),
        }
    }
}

/// One page of an App's log: deliveries newest first, and the cursor of the next page
/// (`None` on the last).
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub deliveries: Vec<Delivery>,
    pub next: Option<String>,
}

/// A cursor that is not one the log gave out for this App (or whose delivery has expired).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadCursor;

/// Every App's deliveries, and the events they carried.
#[derive(Debug)]
pub struct DeliveryLog {
    next_id: u64,
    /// By App id: oldest first, ids increasing.
    apps: HashMap<u64, Vec<Delivery>>,
    /// By App and guid: the event, and how many of the App's logged deliveries carry it.
    events: HashMap<(u64, String), (Arc<Webhook>, usize)>,
}

impl Default for DeliveryLog {
    fn default() -> Self {
        Self {
            next_id: FIRST_ID,
            apps: HashMap::new(),
            events: HashMap::new(),
        }
    }
}

fn cursor(id: u64) -> String {
    format!("v1_{id}")
}

impl DeliveryLog {
    /// Logs an attempt to deliver `hook` under `guid` to App `app`'s webhook, begun at
    /// `delivered_at` and lasting `duration`, and forgets what is older than
    /// [`RETENTION`]. Returns the delivery's id.
    ///
    /// `delivered_at` is the wall clock, not simulated time: dockhand compares it with its
    /// own clock (its `lookback`), and simulated time runs ahead of the wall clock.
    pub fn record(
        &mut self,
        app: u64,
        hook: &Arc<Webhook>,
        guid: &str,
        delivered_at: DateTime<Utc>,
        duration: Duration,
        attempt: Attempt,
    ) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let event = self
            .events
            .entry((app, guid.to_string()))
            .or_insert_with(|| (hook.clone(), 0));
        let redelivery = event.1 > 0;
        event.1 += 1;
        self.apps.entry(app).or_default().push(Delivery {
            id,
            guid: guid.to_string(),
            delivered_at,
            redelivery,
            duration,
            attempt,
            action: hook.action,
            installation_id: hook.installation,
            repository_id: hook.repository_id,
            job: hook.job,
        });
        self.expire(app, delivered_at);
        id
    }

    /// Forgets App `app`'s deliveries older than [`RETENTION`] at `now`, and the events
    /// no delivery left carries.
    fn expire(&mut self, app: u64, now: DateTime<Utc>) {
        let Some(log) = self.apps.get_mut(&app) else {
            return;
        };
        let oldest = now - chrono::Duration::from_std(RETENTION).expect("3 days fit");
        let expired = log.iter().take_while(|d| d.delivered_at < oldest).count();
        for delivery in log.drain(..expired) {
            let key = (app, delivery.guid);
            if let Some(event) = self.events.get_mut(&key) {
                event.1 -= 1;
                if event.1 == 0 {
                    self.events.remove(&key);
                }
            }
        }
    }

    /// A page of App `app`'s log, newest first: `per_page` deliveries from `cursor` (from
    /// the newest without one) that `filter` admits.
    pub fn page(
        &self,
        app: u64,
        per_page: usize,
        cursor: Option<&str>,
        filter: Option<StatusFilter>,
    ) -> Result<Page, BadCursor> {
        let log = self.apps.get(&app).map(Vec::as_slice).unwrap_or_default();
        let end = match cursor {
            None => log.len(),
            Some(cursor) => {
                let id: u64 = cursor
                    .strip_prefix("v1_")
                    .and_then(|id| id.parse().ok())
                    .ok_or(BadCursor)?;
                log.binary_search_by_key(&id, |d| d.id)
                    .map_err(|_| BadCursor)?
                    + 1
            }
        };
        let mut older = log[..end]
            .iter()
            .rev()
            .filter(|d| StatusFilter::admits(filter, d));
        let deliveries: Vec<Delivery> = older.by_ref().take(per_page).cloned().collect();
        Ok(Page {
            deliveries,
            next: older.next().map(|d| self::cursor(d.id)),
        })
    }

    /// The event delivery `id` of App `app`'s log carried, and its guid; `None` for an id
    /// the App's log does not hold.
    pub fn event_of(&self, app: u64, id: u64) -> Option<(Arc<Webhook>, String)> {
        let log = self.apps.get(&app)?;
        let delivery = &log[log.binary_search_by_key(&id, |d| d.id).ok()?];
        let (hook, _) = self.events.get(&(app, delivery.guid.clone()))?;
        Some((hook.clone(), delivery.guid.clone()))
    }

    /// Every App's deliveries, each App's oldest first.
    pub fn all(&self) -> impl Iterator<Item = &Delivery> {
        self.apps.values().flatten()
    }
}

#[cfg(test)]
mod tests;
