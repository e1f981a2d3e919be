//! One writer at a time per SQLite file, in the order they arrive.
//!
//! SQLite lets one connection write at a time. A connection that finds the file locked
//! sleeps in its busy handler (1, 2, 5, 10, … up to 100 ms) and retries, and whoever asks
//! at the right moment goes first, so under contention an unlucky write can lose many times
//! in a row. `scripts/sqlite-contention.py` shows it: 8 writers at 60 commits/s each reach
//! a max of 54–130 ms in the busy handler, and 5–24 ms taking turns. Writers in this
//! process instead wait here, on a fair (FIFO) async mutex, and the lock is handed over the
//! moment it is free. The busy handler stays as the backstop for other processes on the
//! same file (`dockhand dlq requeue` beside `dockhand serve`).
//!
//! Every handle on the same file in one process shares the gate: the registry is keyed by
//! the file's canonical path. Postgres needs none ([`WriteGate::none`]).
//!
//! SQLite's automatic WAL checkpoint still runs inside the commit that passes 1,000 WAL
//! pages, and so within that writer's turn. A task that checkpointed beside the writers
//! instead was measured and left out: it cost 10% of the burst throughput and did not
//! change the paced tail (docs/benchmarks.md, issue 12).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use sqlx::pool::PoolConnection;
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use crate::metrics::OpTimer;

/// The gate of one SQLite file (or none). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct WriteGate(Option<Arc<AsyncMutex<()>>>);

/// A turn to write; the next writer goes when it drops.
#[derive(Debug)]
#[must_use = "the turn ends when this is dropped"]
pub struct WriteTurn {
    _held: Option<OwnedMutexGuard<()>>,
}

/// One write under way ([`WriteGate::write`]): its connection, which goes back to the pool
/// before the turn ends, and the turn, which ends before the timer stops. Hold it until the
/// commit; never start a second write while holding it.
pub struct Writing<DB: sqlx::Database> {
    pub conn: PoolConnection<DB>,
    _turn: WriteTurn,
    _timer: OpTimer,
}

type Registry = Mutex<HashMap<PathBuf, Weak<AsyncMutex<()>>>>;

static GATES: std::sync::LazyLock<Registry> = std::sync::LazyLock::new(Registry::default);

impl WriteGate {
    /// No gate: writes go straight to the database (Postgres, which takes row locks).
    #[must_use]
    pub fn none() -> Self {
        Self(None)
    }

    /// The gate shared by every handle on `path` in this process. Call it once the file
    /// exists, so that two spellings of one path meet.
    #[must_use]
    pub fn for_file(path: &Path) -> Self {
        let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let mut gates = GATES
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        gates.retain(|_, gate| gate.strong_count() > 0);
        if let Some(gate) = gates.get(&key).and_then(Weak::upgrade) {
            return Self(Some(gate));
        }
        let gate = Arc::new(AsyncMutex::new(()));
        gates.insert(key, Arc::downgrade(&gate));
        Self(Some(gate))
    }

    /// Waits for this writer's turn.
    pub async fn turn(&self) -> WriteTurn {
        match &self.0 {
            Some(gate) => WriteTurn {
                _held: Some(gate.clone().lock_owned().await),
            },
            None => WriteTurn { _held: None },
        }
    }

    /// Starts one write on `pool`, timed by `timer` from now to the commit: takes a
    /// connection first, then waits for the turn, so that the turn covers only the
    /// statements and not the wait for a connection.
    pub async fn write<DB: sqlx::Database>(
        &self,
        pool: &sqlx::Pool<DB>,
        timer: OpTimer,
    ) -> Result<Writing<DB>, sqlx::Error> {
        let conn = pool.acquire().await?;
        Ok(Writing {
            conn,
            _turn: self.turn().await,
            _timer: timer,
        })
    }

    /// Whether `self` and `other` are the same gate (for tests).
    #[must_use]
    pub fn same_as(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn handles_on_one_file_share_a_gate_and_other_files_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.db"), dir.path().join("b.db"));
        std::fs::write(&a, b"").unwrap();
        std::fs::write(&b, b"").unwrap();
        let first = WriteGate::for_file(&a);
        let again = WriteGate::for_file(&dir.path().join(".").join("a.db"));
        assert!(first.same_as(&again));
        assert!(!first.same_as(&WriteGate::for_file(&b)));
        assert!(!WriteGate::none().same_as(&WriteGate::none()));
    }

    #[tokio::test]
    async fn writers_take_turns_in_the_order_they_arrived() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.db");
        std::fs::write(&path, b"").unwrap();
        let gate = WriteGate::for_file(&path);
        let held = gate.turn().await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for i in 0..5 {
            let (gate, order) = (gate.clone(), order.clone());
            waiters.push(tokio::spawn(async move {
                let _turn = gate.turn().await;
                order.lock().unwrap().push(i);
            }));
            // Each waiter is queued before the next one arrives.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(
            order.lock().unwrap().is_empty(),
            "nobody writes while the turn is held"
        );
        drop(held);
        for w in waiters {
            w.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4]);
    }
}
