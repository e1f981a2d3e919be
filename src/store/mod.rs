//! Job and runner state, in SQLite (single node) or Postgres (scale-out).
//!
//! The jobs table is what makes launches exactly-once: a worker must [`Store::claim`] a job
//! (an atomic insert-or-take-over of an expired lease) before any GitHub or ECS call, and
//! records its intent and results as it goes, so a crash at any point leaves enough behind
//! for the next worker to adopt or clean up.
//!
//! A job's row keeps two facts apart: what GitHub says about it (`github`: queued, in
//! progress on `ran_on`, completed) and what dockhand did for it (`launch`: owed, launching,
//! launched, adopted, failed, dry run, waived). GitHub gives a queued job to any idle runner
//! whose labels cover it, so a job that ran on another job's runner still owes a launch.
//!
//! Both backends run the same SQL through sqlx's `Any` driver; timestamps are unix
//! milliseconds. `DB_NOW` in a query is the database's clock: leases are judged by it. This file holds the connection and the SQL dialect; the queries live by
//! idea: `claims` (the launch under a lease), `tracking` (jobs followed from their
//! webhook events), `runners` and `jobs` (the rows as they are read back), `prune` (finished rows
//! deleted after the retention).

/// The SQL condition on `jobs` of a job waiting for a runner: GitHub has not started it, and
/// a launch is owed, under way or done. The surplus step and the warm fill both count
/// these, and must agree.
macro_rules! waiting_job {
    () => {
        "github = 'queued' AND launch IN ('owed', 'launching', 'launched', 'adopted')"
    };
}

mod claims;
mod event_kind;
mod endings;
mod history;
mod jobs;
mod leader;
mod lifecycle;
mod live;
mod prune;
mod redelivery;
mod runners;
mod spot;
mod state;
mod sweep;
mod tracking;
mod warm;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, AssertSqlSafe, Executor, SqlSafeStr, SqlStr};

pub use claims::{Claim, Leftovers, Owed, PriorAttempt, Registration};
pub use history::{Deferred, Delivered, EventKind, HistoryEntry, REDELIVERY_PREFIX};
pub use jobs::{JobFilter, JobRecord};
pub use lifecycle::{Debt, JobSpec, Replaced, TaskEnd, end_detail};
pub use live::LiveRunner;
pub use prune::{PRUNE_BATCH, Pruned};
pub use redelivery::{DeliveryCheckpoint, DueRedelivery, FailedDelivery};
pub use runners::RunnerRecord;
pub use spot::{Interruption, PendingRerun, RerunState};
pub use state::{GitHubState, LaunchState, RunnerState};
pub use sweep::Standing;
pub use warm::{WarmBooks, WarmIntent, warm_runner_name};

use crate::config::StoreSettings;
use crate::domain::{JobEvent, JobId};
use crate::write_gate::{WriteGate, Writing};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/store/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/store/postgres");

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database did not answer or failed: try again later.
    #[error("store unavailable")]
    Unavailable(#[from] sqlx::Error),
    /// This worker's lease on the job expired and another worker took the job over.
    #[error("lease on job {0} was lost to another worker")]
    LeaseLost(JobId),
}

/// Connections a Postgres store opens at start and keeps open (at most `max_connections`).
pub const WARM_POSTGRES_CONNECTIONS: u32 = 4;

/// Stands for the database's clock in a query (see [`Store::sql`]).
const DB_NOW: &str = "DB_NOW";
/// SQLite's clock in unix milliseconds (`'now'` is fixed for one statement).
const SQLITE_NOW: &str = "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)";
/// Postgres's clock in unix milliseconds.
const POSTGRES_NOW: &str = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)";

/// The store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    /// SQLite's writers take turns here instead of in its busy handler.
    gate: WriteGate,
    sqlite: bool,
    /// How far this handle's clock runs ahead of the machine's, in milliseconds: 0, except
    /// in tests that play a worker whose clock is wrong ([`Store::with_clock_skew`]).
    skew_ms: i64,
    /// Who writes through this handle, as the job history names it ([`Store::acting_as`]).
    process: Arc<str>,
}

/// The machine's name (a container's, on ECS), for the job history; `unknown` if unread.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// GitHub's `created_at` for the row, or `now` when the delivery had none (older GitHub
/// Enterprise Server versions): the column is required, and the time dockhand first
/// stored the job is the closest thing known.
fn created_at(event: &JobEvent, now: i64) -> i64 {
    event.job.created_at.map_or(now, millis)
}

impl Store {
    /// Connects; SQLite files (and their directory) are created and always migrated,
    /// Postgres is migrated when `migrate_on_start` is set.
    pub async fn connect(settings: &StoreSettings) -> anyhow::Result<Self> {
        let store = Self::connect_only(settings).await?;
        if store.sqlite || settings.migrate_on_start {
            store.migrate().await?;
        }
        Ok(store)
    }

    /// Connects without migrating (for `dockhand migrate`, which migrates explicitly).
    pub async fn connect_only(settings: &StoreSettings) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let sqlite = settings.url.starts_with("sqlite:");
        let mut url = settings.url.clone();
        let mut file = None;
        if sqlite {
            let path = url
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:");
            let path = path.split('?').next().unwrap_or_default();
            file = Some(std::path::PathBuf::from(path));
            if let Some(dir) = std::path::Path::new(path).parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            if !url.contains("mode=") {
                url.push_str(if url.contains('?') {
                    "&mode=rwc"
                } else {
                    "?mode=rwc"
                });
            }
        }
        // Postgres keeps a few connections open from the start: opening one took ~100 ms in
        // the load harness, which the first launches after a start paid (issue 12).
        let warm = if sqlite {
            0
        } else {
            settings.max_connections.min(WARM_POSTGRES_CONNECTIONS)
        };
        let pool = AnyPoolOptions::new()
            .max_connections(settings.max_connections)
            .min_connections(warm)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                             PRAGMA busy_timeout = 10000;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .context("connecting to the store (store.url)")?;
        // After connecting, so the file exists and its path can be made canonical.
        let gate = file.map_or_else(WriteGate::none, |f| WriteGate::for_file(&f));
        Ok(Self {
            pool,
            gate,
            sqlite,
            skew_ms: 0,
            process: format!("{}@{}", std::process::id(), hostname()).into(),
        })
    }

    /// Applies this backend's pending migrations (embedded in the binary).
    pub async fn migrate(&self) -> anyhow::Result<()> {
        let migrator = if self.sqlite {
            &SQLITE_MIGRATIONS
        } else {
            &POSTGRES_MIGRATIONS
        };
        migrator
            .run(&self.pool)
            .await
            .context("migrating the store")?;
        Ok(())
    }

    /// The same SQL for both backends: `$N` placeholders become SQLite's `?N`, and `DB_NOW`
    /// the database's clock in unix milliseconds. Only those tokens of a literal change, to
    /// other literals, so the result is as safe as the literal.
    fn sql(&self, query: &'static str) -> SqlStr {
        if !self.sqlite && !query.contains(DB_NOW) {
            return query.into_sql_str();
        }
        let query = if self.sqlite {
            query.replace(DB_NOW, SQLITE_NOW).replace('$', "?")
        } else {
            query.replace(DB_NOW, POSTGRES_NOW)
        };
        AssertSqlSafe(query).into_sql_str()
    }

    /// [`Store::sql`] for a query built at run time from literals and `$N` placeholders
    /// only (never from a value): it is as safe as those literals.
    fn sql_owned(&self, query: String) -> SqlStr {
        let query = if self.sqlite {
            query.replace(DB_NOW, SQLITE_NOW).replace('$', "?")
        } else {
            query.replace(DB_NOW, POSTGRES_NOW)
        };
        AssertSqlSafe(query).into_sql_str()
    }

    /// This handle, with a clock that runs `skew` ahead of the machine's (behind, if
    /// negative): a worker whose clock is wrong, for tests. Only the timestamps dockhand
    /// reads from its own clock move; leases are judged by the database's clock.
    #[must_use]
    pub fn with_clock_skew(mut self, skew: chrono::TimeDelta) -> Self {
        self.skew_ms = skew.num_milliseconds();
        self
    }

    /// This handle, writing as `process` (a worker's lease owner) on this host, in the job
    /// history.
    #[must_use]
    pub fn acting_as(mut self, process: &str) -> Self {
        self.process = format!("{process}@{}", hostname()).into();
        self
    }

    /// Starts one write, timed into `dockhand_store_write_seconds{op}` from the wait for a
    /// connection and the file's turn (SQLite) to the commit, where contention shows.
    async fn write(&self, op: &'static str) -> Result<Writing<sqlx::Any>, StoreError> {
        let timer = crate::metrics::OpTimer::start(crate::metrics::STORE_WRITE_SECONDS, op);
        Ok(self.gate.write(&self.pool, timer).await?)
    }

    /// This process's idea of now, in unix milliseconds.
    fn now(&self) -> i64 {
        millis(Utc::now()) + self.skew_ms
    }

    /// Whether the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
