//! What the webhook recovery loop keeps (see [`crate::redelivery`]): per App, how far its
//! delivery log has been read; per event (delivery guid) that failed to arrive, the newest
//! failed delivery, the one last redelivered, how often, and what came of it. Any process
//! that leads next goes on from here.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{Store, StoreError, millis};

/// How far an App's delivery log has been read: its newest delivery seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryCheckpoint {
    pub delivered_at: DateTime<Utc>,
    pub delivery_id: u64,
}

/// A failed delivery of an event, as read from an App's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedDelivery {
    pub guid: String,
    pub app_id: u64,
    pub delivery_id: u64,
    pub action: Option<String>,
    pub delivered_at: DateTime<Utc>,
    pub status_code: u16,
}

/// An event to redeliver: its newest delivery failed and was not redelivered yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueRedelivery {
    pub guid: String,
    /// The App whose log holds the newest failed delivery, and that delivery.
    pub app_id: u64,
    pub delivery_id: u64,
    pub action: Option<String>,
    /// Redeliveries asked for so far.
    pub attempts: u32,
    pub first_failed_at: DateTime<Utc>,
}

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

impl Store {
    /// How far App `app_id`'s log has been read, if ever.
    pub async fn redelivery_checkpoint(
        &self,
        app_id: u64,
    ) -> Result<Option<DeliveryCheckpoint>, StoreError> {
        let row =
            sqlx::query(self.sql(
                "SELECT delivered_at, delivery_id FROM redelivery_checkpoints WHERE app_id = $1",
            ))
            .bind(app_id as i64)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(DeliveryCheckpoint {
                delivered_at: time(r.try_get("delivered_at")?),
                delivery_id: r.try_get::<i64, _>("delivery_id")? as u64,
            })
        })
        .transpose()
        .map_err(|e: sqlx::Error| e.into())
    }

    /// Moves App `app_id`'s checkpoint forward to `to` (never back: a slower leader's pass
    /// cannot undo a newer one's).
    pub async fn advance_redelivery_checkpoint(
        &self,
        app_id: u64,
        to: DeliveryCheckpoint,
    ) -> Result<(), StoreError> {
        let mut w = self.write("redelivery_checkpoint").await?;
        sqlx::query(self.sql(
            "INSERT INTO redelivery_checkpoints (app_id, delivered_at, delivery_id, updated_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (app_id) DO UPDATE SET
                 delivered_at = excluded.delivered_at,
                 delivery_id = excluded.delivery_id,
                 updated_at = excluded.updated_at
             WHERE excluded.delivery_id > redelivery_checkpoints.delivery_id",
        ))
        .bind(app_id as i64)
        .bind(millis(to.delivered_at))
        .bind(to.delivery_id as i64)
        .bind(self.now())
        .execute(&mut *w.conn)
        .await?;
        Ok(())
    }

    /// Records failed deliveries, in one transaction: a new event starts `failing`; one
    /// known and still failing keeps its newest failed delivery (and the App whose log holds
    /// it) and its first failure. Events already recovered or given up stay so.
    pub async fn record_failed_deliveries(
        &self,
        failed: &[FailedDelivery],
    ) -> Result<(), StoreError> {
        if failed.is_empty() {
            return Ok(());
        }
        let mut w = self.write("failed_deliveries").await?;
        let now = self.now();
        let mut tx = sqlx::Connection::begin(&mut *w.conn).await?;
        for f in failed {
            sqlx::query(self.sql(
                "INSERT INTO failed_deliveries (guid, app_id, delivery_id, action,
                     first_failed_at, failed_at, status_code, attempts, state, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $5, $6, 0, 'failing', $7)
                 ON CONFLICT (guid) DO UPDATE SET
                     app_id = CASE WHEN excluded.delivery_id > failed_deliveries.delivery_id
                         THEN excluded.app_id ELSE failed_deliveries.app_id END,
                     status_code = CASE WHEN excluded.delivery_id > failed_deliveries.delivery_id
                         THEN excluded.status_code ELSE failed_deliveries.status_code END,
                     failed_at = CASE WHEN excluded.delivery_id > failed_deliveries.delivery_id
                         THEN excluded.failed_at ELSE failed_deliveries.failed_at END,
                     delivery_id = CASE WHEN excluded.delivery_id > failed_deliveries.delivery_id
                         THEN excluded.delivery_id ELSE failed_deliveries.delivery_id END,
                     first_failed_at = CASE
                         WHEN excluded.first_failed_at < failed_deliveries.first_failed_at
                         THEN excluded.first_failed_at ELSE failed_deliveries.first_failed_at END,
                     action = COALESCE(failed_deliveries.action, excluded.action),
                     updated_at = excluded.updated_at
                 WHERE failed_deliveries.state = 'failing'",
            ))
            .bind(f.guid.clone())
            .bind(f.app_id as i64)
            .bind(f.delivery_id as i64)
            .bind(f.action.clone())
            .bind(millis(f.delivered_at))
            .bind(i64::from(f.status_code))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The guids of events that failed and are not recovered yet (failing or given up),
    /// whose first failure is no older than `since`: what a successful delivery can settle.
    pub async fn unrecovered_deliveries(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(self.sql(
            "SELECT guid FROM failed_deliveries
             WHERE state IN ('failing', 'exhausted') AND first_failed_at >= $1",
        ))
        .bind(millis(since))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Marks an event recovered: one of its deliveries succeeded. False if it was
    /// recovered already.
    pub async fn delivery_recovered(&self, guid: &str) -> Result<bool, StoreError> {
        let mut w = self.write("failed_deliveries").await?;
        let moved = sqlx::query(self.sql(
            "UPDATE failed_deliveries SET state = 'recovered', updated_at = $2
             WHERE guid = $1 AND state <> 'recovered'",
        ))
        .bind(guid.to_string())
        .bind(self.now())
        .execute(&mut *w.conn)
        .await?
        .rows_affected();
        Ok(moved > 0)
    }

    /// Events to redeliver: still failing, first failed no earlier than `since`, whose newest
    /// failed delivery was not redelivered yet, or was asked for before `stale_before` and
    /// never showed up again (the ask was lost: a crash right after it was taken, or GitHub
    /// did not make it). `queued` events first, so waiting jobs get their runners before the
    /// rest is put right; then oldest first failure first, so an event's `queued` comes
    /// before its `completed`.
    pub async fn due_redeliveries(
        &self,
        since: DateTime<Utc>,
        stale_before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<DueRedelivery>, StoreError> {
        let rows = sqlx::query(self.sql(
            "SELECT guid, app_id, delivery_id, action, attempts, first_failed_at
             FROM failed_deliveries
             WHERE state = 'failing' AND first_failed_at >= $1
               AND (asked_delivery_id IS NULL OR delivery_id > asked_delivery_id
                    OR asked_at < $2)
             ORDER BY CASE WHEN action = 'queued' THEN 0 ELSE 1 END, first_failed_at,
                      delivery_id
             LIMIT $3",
        ))
        .bind(millis(since))
        .bind(millis(stale_before))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DueRedelivery {
                    guid: r.try_get("guid")?,
                    app_id: r.try_get::<i64, _>("app_id")? as u64,
                    delivery_id: r.try_get::<i64, _>("delivery_id")? as u64,
                    action: r.try_get("action")?,
                    attempts: r.try_get::<i64, _>("attempts")? as u32,
                    first_failed_at: time(r.try_get("first_failed_at")?),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Takes the redelivery of `delivery` (the event's newest failed delivery) before it is
    /// asked for, so that failure is handled until a newer one shows (or the ask goes stale,
    /// see [`Store::due_redeliveries`]). It counts against `max_attempts` unless it is a
    /// probe of a webhook that still looks down. False if it was taken already (by another
    /// leader, in the moment two overlap).
    pub async fn claim_redelivery(
        &self,
        guid: &str,
        delivery: u64,
        stale_before: DateTime<Utc>,
        counts: bool,
    ) -> Result<bool, StoreError> {
        let mut w = self.write("failed_deliveries").await?;
        let taken = sqlx::query(self.sql(
            "UPDATE failed_deliveries
             SET attempts = attempts + $4, asked_delivery_id = $2, asked_at = $5,
                 updated_at = $5
             WHERE guid = $1 AND state = 'failing'
               AND (asked_delivery_id IS NULL OR asked_delivery_id < $2 OR asked_at < $3)",
        ))
        .bind(guid.to_string())
        .bind(delivery as i64)
        .bind(millis(stale_before))
        .bind(i64::from(counts))
        .bind(self.now())
        .execute(&mut *w.conn)
        .await?
        .rows_affected();
        Ok(taken > 0)
    }

    /// Hands back a redelivery GitHub did not take (a transient failure): the next pass
    /// asks again, and the attempt (if it `counted`) is not spent.
    pub async fn release_redelivery(
        &self,
        guid: &str,
        delivery: u64,
        counted: bool,
    ) -> Result<(), StoreError> {
        let mut w = self.write("failed_deliveries").await?;
        sqlx::query(self.sql(
            "UPDATE failed_deliveries
             SET attempts = attempts - $3, asked_delivery_id = NULL, asked_at = NULL,
                 updated_at = $4
             WHERE guid = $1 AND asked_delivery_id = $2",
        ))
        .bind(guid.to_string())
        .bind(delivery as i64)
        .bind(i64::from(counted))
        .bind(self.now())
        .execute(&mut *w.conn)
        .await?;
        Ok(())
    }

    /// Gives an event up (`max_attempts` reached, or GitHub refused for good). False if it
    /// was not failing any more.
    pub async fn redelivery_given_up(&self, guid: &str) -> Result<bool, StoreError> {
        let mut w = self.write("failed_deliveries").await?;
        let moved = sqlx::query(self.sql(
            "UPDATE failed_deliveries SET state = 'exhausted', updated_at = $2
             WHERE guid = $1 AND state = 'failing'",
        ))
        .bind(guid.to_string())
        .bind(self.now())
        .execute(&mut *w.conn)
        .await?
        .rows_affected();
        Ok(moved > 0)
    }

    /// When the oldest event not recovered yet (failing or given up) first failed, among
    /// those first failed no earlier than `since`.
    pub async fn oldest_unrecovered_delivery(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let oldest: Option<i64> = sqlx::query_scalar(self.sql(
            "SELECT MIN(first_failed_at) FROM failed_deliveries
             WHERE state IN ('failing', 'exhausted') AND first_failed_at >= $1",
        ))
        .bind(millis(since))
        .fetch_one(&self.pool)
        .await?;
        Ok(oldest.map(time))
    }

    /// Deletes events first failed before `before` (past the lookback: never read again).
    pub async fn prune_failed_deliveries(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut w = self.write("failed_deliveries").await?;
        Ok(
            sqlx::query(self.sql("DELETE FROM failed_deliveries WHERE first_failed_at < $1"))
                .bind(millis(before))
                .execute(&mut *w.conn)
                .await?
                .rows_affected(),
        )
    }
}
