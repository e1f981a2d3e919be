//! The embedded queue: a SQLite file with SQS's semantics, for single-node use.
//!
//! - A received message stays invisible until its visibility timeout passes.
//! - Each receive increments its receive count and issues a new receipt handle.
//! - A message already received `max_receives` times moves to dead-letter on its next
//!   receive instead of being delivered (SQS's maxReceiveCount).
//! - Sends commit with `synchronous = FULL` before they are acknowledged, so a restart, or
//!   a crash, loses nothing that was acknowledged.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use tokio::sync::Notify;

use super::{Depth, MessageId, OutgoingMessage, Queue, QueueError, ReceiptHandle, ReceivedMessage};
use crate::config::EmbeddedQueueSettings;
use crate::metrics::{OpTimer, QUEUE_WRITE_SECONDS};
use crate::write_gate::{WriteGate, Writing};

const MAIN: &str = "main";
const DEAD_LETTER: &str = "dead_letter";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/embedded-queue");

/// One queue (main or dead-letter) in an embedded queue file.
#[derive(Debug, Clone)]
pub struct EmbeddedQueue {
    pool: SqlitePool,
    /// The file's writers take turns here instead of in SQLite's busy handler.
    gate: WriteGate,
    path: PathBuf,
    name: &'static str,
    visibility_timeout: Duration,
    /// `None` for the dead-letter queue, which redrives nowhere.
    max_receives: Option<u32>,
    poll_interval: Duration,
    /// Wakes long-polling receivers when this process sends.
    sent: Arc<Notify>,
    /// Whether this queue's last receive found nothing (see `receive_now`).
    idle: Arc<AtomicBool>,
}

impl EmbeddedQueue {
    /// Opens (creating if needed) the file and returns its main queue.
    pub async fn open(settings: &EmbeddedQueueSettings) -> anyhow::Result<Self> {
        if let Some(dir) = settings.path.parent()
            && !dir.as_os_str().is_empty()
        {
            tokio::fs::create_dir_all(dir).await?;
        }
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(&settings.path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self {
            pool,
            gate: WriteGate::for_file(&settings.path),
            path: settings.path.clone(),
            name: MAIN,
            visibility_timeout: settings.visibility_timeout,
            max_receives: Some(settings.max_receives),
            poll_interval: settings.poll_interval,
            sent: Arc::new(Notify::new()),
            idle: Arc::new(AtomicBool::new(true)),
        })
    }

    /// Starts one write, timed into `dockhand_queue_write_seconds{op}` from the wait for a
    /// connection and the file's turn to the commit.
    async fn write(&self, op: &'static str) -> Result<Writing<sqlx::Sqlite>, QueueError> {
        let timer = OpTimer::start(QUEUE_WRITE_SECONDS, op);
        self.gate
            .write(&self.pool, timer)
            .await
            .map_err(unavailable)
    }

    /// The dead-letter queue in the same file.
    fn dead_letter(&self) -> Self {
        Self {
            name: DEAD_LETTER,
            max_receives: None,
            idle: Arc::new(AtomicBool::new(true)),
            ..self.clone()
        }
    }

    async fn receive_now(
        &self,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let now = Utc::now().timestamp_millis();
        // After an empty receive, a look first, without the write turn: an idle poll then
        // costs no write and does not hold up the sends it waits for. While messages keep
        // coming the look would only add a query, so it is skipped.
        if self.idle.load(Ordering::Relaxed) {
            let ready: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM queue_messages WHERE queue = ?1 AND visible_at <= ?2)",
            )
            .bind(self.name)
            .bind(now)
            .fetch_one(&self.pool)
            .await
            .map_err(unavailable)?;
            if !ready {
                return Ok(Vec::new());
            }
        }
        let mut w = self.write("receive").await?;
        // One commit for the dead-letter move and the receive.
        let mut tx = sqlx::Connection::begin(&mut *w.conn)
            .await
            .map_err(unavailable)?;
        if let Some(limit) = self.max_receives {
            sqlx::query(
                "UPDATE queue_messages
                 SET queue = ?1, visible_at = ?2, receipt = NULL,
                     attributes = json_set(attributes,
                         '$.\"dead-letter-reason\"', 'exceeded max receives (' || ?3 || ')',
                         '$.\"dead-letter-receives\"', CAST(receive_count AS TEXT))
                 WHERE queue = ?4 AND visible_at <= ?2 AND receive_count >= ?3",
            )
            .bind(DEAD_LETTER)
            .bind(now)
            .bind(i64::from(limit))
            .bind(self.name)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        }
        let visible_at = now + visibility.as_millis() as i64;
        let rows = sqlx::query(
            "UPDATE queue_messages
             SET receive_count = receive_count + 1, visible_at = ?1,
                 receipt = lower(hex(randomblob(16)))
             WHERE seq IN (
                 SELECT seq FROM queue_messages
                 WHERE queue = ?2 AND visible_at <= ?3 AND (?4 IS NULL OR receive_count < ?4)
                 ORDER BY seq LIMIT ?5)
             RETURNING seq, id, receipt, body, attributes, receive_count, sent_at",
        )
        .bind(visible_at)
        .bind(self.name)
        .bind(now)
        .bind(self.max_receives.map(i64::from))
        .bind(max.min(super::MAX_BATCH) as i64)
        .fetch_all(&mut *tx)
        .await
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        self.idle.store(rows.is_empty(), Ordering::Relaxed);
        let mut messages = rows
            .into_iter()
            .map(|row| {
                let attributes: String = row.try_get("attributes")?;
                let sent_at: i64 = row.try_get("sent_at")?;
                let seq: i64 = row.try_get("seq")?;
                Ok((
                    seq,
                    ReceivedMessage {
                        id: MessageId(row.try_get("id")?),
                        receipt: ReceiptHandle(row.try_get("receipt")?),
                        body: row.try_get("body")?,
                        attributes: serde_json::from_str(&attributes).unwrap_or_default(),
                        receive_count: row.try_get::<i64, _>("receive_count")? as u32,
                        sent_at: DateTime::from_timestamp_millis(sent_at),
                    },
                ))
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(unavailable)?;
        messages.sort_by_key(|(seq, _)| *seq);
        Ok(messages.into_iter().map(|(_, m)| m).collect())
    }

    /// Sends a message with its attributes as they are (used to move messages between the
    /// main and dead-letter queues).
    async fn insert(
        &self,
        tx: &mut sqlx::SqliteConnection,
        message: &OutgoingMessage,
        now: i64,
    ) -> Result<MessageId, sqlx::Error> {
        let id = uuid::Uuid::new_v4().to_string();
        let attributes =
            serde_json::to_string(&message.attributes).expect("string maps always serialize");
        sqlx::query(
            "INSERT INTO queue_messages (id, queue, body, attributes, sent_at, visible_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(&id)
        .bind(self.name)
        .bind(&message.body)
        .bind(attributes)
        .bind(now)
        .bind(now + message.delay.min(super::MAX_DELAY).as_millis() as i64)
        .execute(&mut *tx)
        .await?;
        Ok(MessageId(id))
    }
}

fn unavailable(err: sqlx::Error) -> QueueError {
    QueueError::Unavailable(Box::new(err))
}

#[async_trait]
impl Queue for EmbeddedQueue {
    async fn send_batch(
        &self,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<Result<MessageId, QueueError>>, QueueError> {
        let mut w = self.write("send").await?;
        let now = Utc::now().timestamp_millis();
        let mut tx = sqlx::Connection::begin(&mut *w.conn)
            .await
            .map_err(unavailable)?;
        let mut ids = Vec::with_capacity(messages.len());
        for message in &messages {
            ids.push(Ok(self
                .insert(&mut tx, message, now)
                .await
                .map_err(unavailable)?));
        }
        tx.commit().await.map_err(unavailable)?;
        self.sent.notify_waiters();
        Ok(ids)
    }

    fn visibility_timeout(&self) -> Duration {
        self.visibility_timeout
    }

    fn location(&self) -> String {
        format!("{} ({} queue)", self.path.display(), self.name)
    }

    async fn receive_with_visibility(
        &self,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before looking, so a send between the look and the wait still wakes us.
            let sent = self.sent.notified();
            tokio::pin!(sent);
            sent.as_mut().enable();
            let messages = self.receive_now(max, visibility).await?;
            let now = tokio::time::Instant::now();
            if !messages.is_empty() || now >= deadline {
                return Ok(messages);
            }
            let next_look = deadline.min(now + self.poll_interval);
            tokio::select! {
                _ = sent => {}
                _ = tokio::time::sleep_until(next_look) => {}
            }
        }
    }

    async fn change_visibility(
        &self,
        receipt: &ReceiptHandle,
        timeout: Duration,
    ) -> Result<(), QueueError> {
        let mut w = self.write("change_visibility").await?;
        let visible_at = Utc::now().timestamp_millis() + timeout.as_millis() as i64;
        let done = sqlx::query(
            "UPDATE queue_messages SET visible_at = ?1 WHERE receipt = ?2 AND queue = ?3",
        )
        .bind(visible_at)
        .bind(&receipt.0)
        .bind(self.name)
        .execute(&mut *w.conn)
        .await
        .map_err(unavailable)?;
        match done.rows_affected() {
            0 => Err(QueueError::InvalidReceipt),
            _ => Ok(()),
        }
    }

    async fn delete(&self, receipt: &ReceiptHandle) -> Result<(), QueueError> {
        let mut w = self.write("delete").await?;
        let done = sqlx::query("DELETE FROM queue_messages WHERE receipt = ?1 AND queue = ?2")
            .bind(&receipt.0)
            .bind(self.name)
            .execute(&mut *w.conn)
            .await
            .map_err(unavailable)?;
        match done.rows_affected() {
            0 => Err(QueueError::InvalidReceipt),
            _ => Ok(()),
        }
    }

    async fn approximate_depth(&self) -> Result<Depth, QueueError> {
        let (visible, all): (i64, i64) = sqlx::query_as(
            "SELECT coalesce(sum(visible_at <= ?2), 0), count(*) FROM queue_messages WHERE queue = ?1",
        )
        .bind(self.name)
        .bind(Utc::now().timestamp_millis())
        .fetch_one(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(Depth {
            visible: visible as u64,
            in_flight: (all - visible) as u64,
        })
    }

    async fn ping(&self) -> Result<(), QueueError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn dead_letter_queue(&self) -> Result<Option<Arc<dyn Queue>>, QueueError> {
        Ok(match self.max_receives {
            Some(_) => Some(Arc::new(self.dead_letter())),
            None => None,
        })
    }
}
