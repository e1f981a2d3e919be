//! Leadership: one process at a time runs a role (the reconciler), by a lease in the store
//! judged by the database's clock, so a leader that dies is replaced within one lease.

use std::time::Duration;

use super::{Store, StoreError};

impl Store {
    /// Takes or renews the lease on `role` for `owner`: true if `owner` leads now. Another
    /// process's lease is taken only once it has expired.
    pub async fn try_lead(
        &self,
        role: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let mut w = self.write("lead").await?;
        let sql = self.sql(
            "INSERT INTO leaders (role, owner, expires_at, since)
             VALUES ($1, $2, DB_NOW + $3, DB_NOW)
             ON CONFLICT (role) DO UPDATE SET
                 owner = excluded.owner,
                 expires_at = excluded.expires_at,
                 since = CASE WHEN leaders.owner = excluded.owner THEN leaders.since
                              ELSE excluded.since END
             WHERE leaders.owner = excluded.owner OR leaders.expires_at < DB_NOW
             RETURNING owner",
        );
        let leads: Option<String> = sqlx::query_scalar(sql)
            .bind(role.to_string())
            .bind(owner.to_string())
            .bind(lease.as_millis() as i64)
            .fetch_optional(&mut *w.conn)
            .await?;
        Ok(leads.as_deref() == Some(owner))
    }

    /// Gives the lease up (on shutdown), so another process leads at once.
    pub async fn resign(&self, role: &str, owner: &str) -> Result<(), StoreError> {
        let mut w = self.write("resign").await?;
        sqlx::query(self.sql("DELETE FROM leaders WHERE role = $1 AND owner = $2"))
            .bind(role.to_string())
            .bind(owner.to_string())
            .execute(&mut *w.conn)
            .await?;
        Ok(())
    }

    /// Who leads `role` now, if anyone's lease is live.
    pub async fn leader(&self, role: &str) -> Result<Option<String>, StoreError> {
        let sql = self.sql("SELECT owner FROM leaders WHERE role = $1 AND expires_at >= DB_NOW");
        Ok(sqlx::query_scalar(sql)
            .bind(role.to_string())
            .fetch_optional(&self.pool)
            .await?)
    }
}
