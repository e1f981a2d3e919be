//! A job's history: an append-only record of everything that happened to a job, written
//! in the same transaction as each change to its row, so that the two cannot disagree.
//! Each entry has a time, a kind from a closed set ([`EventKind`]), the process that wrote
//! it, and a small JSON detail: never a secret, a JIT config or a payload.
//!
//! Entries may come before the job's row (a delivery deferred before any claim) or without
//! one (no pool serves the job's labels). They are pruned with the job, or after the
//! retention when the job has no row ([`super::prune`]).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::{AnyConnection, Row};

pub use super::event_kind::EventKind;
use super::{Store, StoreError, millis};
use crate::domain::{JobEvent, JobId};

/// The delivery id of a `queued` message dockhand sent itself (a replacement launch), not
/// GitHub: followed by the job id and the replacement's number.
pub const REDELIVERY_PREFIX: &str = "dockhand:";

/// One entry of a job's history, as read back.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryEntry {
    pub at: DateTime<Utc>,
    pub kind: EventKind,
    /// The process that wrote it.
    pub process: String,
    pub detail: Value,
}

/// A delivery as a worker handles it: the event, and when the ingress accepted it.
#[derive(Debug, Clone, Copy)]
pub struct Delivered<'a> {
    pub event: &'a JobEvent,
    pub accepted_at: DateTime<Utc>,
}

/// A launch that waits, as its history records it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Deferred {
    /// A closed label: `pool_full`, `capacity`, `rate_limit`, `held`, `unknown_pool`,
    /// `error`.
    pub why: &'static str,
    /// The same in words (an error's message).
    pub reason: String,
    /// When the job is tried again.
    pub until: DateTime<Utc>,
    /// The pool, where one was matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// For `pool_full`: the pool's live runners and its `max_runners`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
}

impl Deferred {
    pub fn new(why: &'static str, reason: impl Into<String>, until: DateTime<Utc>) -> Self {
        Self {
            why,
            reason: reason.into(),
            until,
            pool: None,
            live: None,
            max: None,
        }
    }

    pub(super) fn detail(&self) -> Value {
        serde_json::to_value(self).expect("a deferral serializes")
    }
}

/// An entry to append. `once`, when set, makes it the only entry of the job with that key.
pub(super) struct Note {
    pub job: JobId,
    pub at: i64,
    pub kind: EventKind,
    pub once: Option<String>,
    pub detail: Value,
}

impl Note {
    pub fn new(job: JobId, at: i64, kind: EventKind, detail: Value) -> Self {
        Self {
            job,
            at,
            kind,
            once: None,
            detail,
        }
    }

    pub fn once(mut self, key: String) -> Self {
        self.once = Some(key);
        self
    }
}

impl Store {
    /// Appends an entry on `conn` (the caller's transaction); false if its `once` key was
    /// taken already.
    pub(super) async fn append(
        &self,
        conn: &mut AnyConnection,
        note: Note,
    ) -> Result<bool, sqlx::Error> {
        Ok(self.append_all(conn, vec![note]).await? > 0)
    }

    /// Appends entries in one statement on `conn`, skipping those whose `once` key is
    /// taken; a [`EventKind::Received`] entry is written as a `duplicate` when the job has
    /// a `received` one already. Returns how many were written.
    pub(super) async fn append_all(
        &self,
        conn: &mut AnyConnection,
        notes: Vec<Note>,
    ) -> Result<u64, sqlx::Error> {
        if notes.is_empty() {
            return Ok(0);
        }
        let mut sql = String::from(
            "INSERT INTO job_history (job_id, at, kind, process, once, detail) VALUES ",
        );
        for (i, note) in notes.iter().enumerate() {
            let n = i * 6;
            let kind = if note.kind == EventKind::Received {
                format!(
                    "CASE WHEN EXISTS (SELECT 1 FROM job_history WHERE job_id = ${} AND kind = 'received') \
                     THEN 'duplicate' ELSE ${} END",
                    n + 1,
                    n + 3
                )
            } else {
                format!("${}", n + 3)
            };
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!(
                "(${}, ${}, {kind}, ${}, ${}, ${})",
                n + 1,
                n + 2,
                n + 4,
                n + 5,
                n + 6
            ));
        }
        sql.push_str(" ON CONFLICT DO NOTHING");
        let mut query = sqlx::query(self.sql_owned(sql));
        for note in notes {
            query = query
                .bind(note.job.0 as i64)
                .bind(note.at)
                .bind(note.kind.as_str().to_string())
                .bind(self.process.to_string())
                .bind(note.once)
                .bind(note.detail.to_string());
        }
        Ok(query.execute(&mut *conn).await?.rows_affected())
    }

    /// The entries for a `queued` delivery: `received` (or `duplicate`, for another
    /// delivery id), at the time the ingress accepted it, and `matched` the first time a
    /// pool is. A delivery seen before adds neither.
    pub(super) fn arrival(
        &self,
        delivered: &Delivered<'_>,
        pool: Option<&str>,
        extra: Value,
        now: i64,
    ) -> Vec<Note> {
        let event = delivered.event;
        let job = event.job.id;
        if event.delivery.0.starts_with(REDELIVERY_PREFIX) {
            // dockhand's own copy (a replacement): the `replaced` entry tells of it.
            return Vec::new();
        }
        let mut detail = json!({
            "delivery": event.delivery.0,
            "repo": event.repository.full_name,
            "labels": event.job.labels.0,
        });
        if let (Value::Object(detail), Value::Object(extra)) = (&mut detail, extra) {
            detail.extend(extra);
        }
        let mut notes = vec![
            Note::new(
                job,
                millis(delivered.accepted_at),
                EventKind::Received,
                detail,
            )
            .once(format!("delivery:{}", event.delivery.0)),
        ];
        if let Some(pool) = pool {
            notes.push(
                Note::new(job, now, EventKind::Matched, json!({ "pool": pool }))
                    .once(format!("pool:{pool}")),
            );
        }
        notes
    }

    /// Notes, in one write, a delivery and something that happened to it without changing
    /// the job's row: a wait before any claim, a duplicate, no pool.
    async fn note_delivered(
        &self,
        op: &'static str,
        delivered: &Delivered<'_>,
        pool: Option<&str>,
        arrival: Value,
        then: Option<(EventKind, Value)>,
    ) -> Result<(), StoreError> {
        let mut w = self.write(op).await?;
        let now = self.now();
        let mut notes = self.arrival(delivered, pool, arrival, now);
        if let Some((kind, detail)) = then {
            notes.push(Note::new(delivered.event.job.id, now, kind, detail));
        }
        self.append_all(&mut w.conn, notes).await?;
        Ok(())
    }

    /// A launch that waits before (or without) a claim of this worker's.
    pub async fn record_deferral(
        &self,
        delivered: &Delivered<'_>,
        deferred: &Deferred,
    ) -> Result<(), StoreError> {
        let pool = deferred
            .pool
            .as_deref()
            .filter(|_| deferred.why != "unknown_pool");
        let then = Some((EventKind::Deferred, deferred.detail()));
        self.note_delivered("note_deferral", delivered, pool, json!({}), then)
            .await
    }

    /// A `queued` delivery of a job whose launch is settled (`launch`): recorded as a
    /// duplicate unless it is the very delivery seen before.
    pub async fn record_duplicate(
        &self,
        delivered: &Delivered<'_>,
        launch: super::LaunchState,
    ) -> Result<(), StoreError> {
        let arrival = json!({ "launch": launch.as_str() });
        self.note_delivered("note_duplicate", delivered, None, arrival, None)
            .await
    }

    /// No pool serves the job's labels: nothing is launched, and only this is stored.
    pub async fn record_unmatched(&self, delivered: &Delivered<'_>) -> Result<(), StoreError> {
        let detail = json!({ "labels": delivered.event.job.labels.0 });
        let then = Some((EventKind::Unmatched, detail));
        self.note_delivered("note_unmatched", delivered, None, json!({}), then)
            .await
    }

    /// The job's message went to the dead-letter queue.
    pub async fn record_dead_lettered(&self, job: JobId, reason: &str) -> Result<(), StoreError> {
        let mut w = self.write("note_dead_lettered").await?;
        let note = Note::new(
            job,
            self.now(),
            EventKind::DeadLettered,
            json!({ "reason": reason }),
        );
        self.append(&mut w.conn, note).await?;
        Ok(())
    }

    /// The job's history, oldest first.
    pub async fn history(&self, job: JobId) -> Result<Vec<HistoryEntry>, StoreError> {
        let sql = self.sql(
            "SELECT at, kind, process, detail FROM job_history WHERE job_id = $1
             ORDER BY at, id",
        );
        let rows = sqlx::query(sql)
            .bind(job.0 as i64)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let at: i64 = r.try_get("at")?;
                let detail: String = r.try_get("detail")?;
                Ok(HistoryEntry {
                    at: DateTime::from_timestamp_millis(at).unwrap_or_default(),
                    kind: EventKind::parse(&r.try_get::<String, _>("kind")?),
                    process: r.try_get("process")?,
                    detail: serde_json::from_str(&detail).unwrap_or(Value::Null),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_names() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), k);
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        assert_eq!(EventKind::parse("resurrected"), EventKind::Unknown);
    }
}
