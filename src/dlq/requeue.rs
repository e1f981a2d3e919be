//! `requeue`: a scan that holds the messages a selection picks (a [`Plan`]), then moves
//! them to the main queue, each sent before it is deleted from the dead-letter queue.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::time::{Instant, MissedTickBehavior};

use super::scan::{Scan, release};
use super::{DeadLetter, Selection, requeued};
use crate::queue::{MessageId, Queue, QueueError};
use crate::telemetry::chain;

/// How long `requeue` hides the messages it chose; extended while the moves go on.
pub const MOVE_HOLD: Duration = Duration::from_secs(300);
/// Extend the hold when less than this is left of it.
const HOLD_MARGIN: Duration = Duration::from_secs(60);

/// The messages a requeue chose, held hidden until they are moved or released.
#[derive(Debug)]
pub struct Plan {
    /// In the order they will move.
    pub chosen: Vec<DeadLetter>,
    /// Matched, but already requeued `max_requeues` times (and not forced).
    pub over_limit: Vec<DeadLetter>,
    pub skipped_by_filter: usize,
    /// False when the scan stopped for time before reaching the end of the queue: a later
    /// run finds the rest.
    pub complete: bool,
    held_until: Instant,
}

/// Scans the dead-letter queue and holds the messages the selection picks. The others are
/// visible again when this returns. Only `max` ends the scan early: a filter has to look at
/// everything.
pub async fn plan(dlq: &dyn Queue, selection: &Selection) -> Result<Plan, QueueError> {
    let max = selection.max.unwrap_or(usize::MAX);
    let now = Utc::now();
    let mut plan = Plan {
        chosen: Vec::new(),
        over_limit: Vec::new(),
        skipped_by_filter: 0,
        complete: true,
        held_until: Instant::now() + MOVE_HOLD,
    };
    let mut scan = Scan::new(dlq, MOVE_HOLD);
    // Held until the scan is over, so that it does not see them again.
    let mut passed_over = Vec::new();
    let scanned = loop {
        if plan.chosen.len() >= max {
            break Ok(());
        }
        let fresh = match scan.next().await {
            Ok(fresh) if fresh.is_empty() => break Ok(()),
            Ok(fresh) => fresh,
            Err(err) => break Err(err),
        };
        for message in fresh {
            let entry = DeadLetter::read(message);
            if plan.chosen.len() >= max {
                passed_over.push(entry.message);
            } else if !selection.filter.matches(&entry, now) {
                plan.skipped_by_filter += 1;
                passed_over.push(entry.message);
            } else if entry.requeues >= selection.max_requeues && !selection.force {
                passed_over.push(entry.message.clone());
                plan.over_limit.push(entry);
            } else {
                plan.chosen.push(entry);
            }
        }
    };
    release(dlq, &passed_over).await;
    plan.complete = !scan.cut_short;
    match scanned {
        Ok(()) => Ok(plan),
        Err(err) => {
            plan.release(dlq).await;
            Err(err)
        }
    }
}

/// How one message fared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Moved {
    Moved,
    /// Not moved; it stays in the dead-letter queue (or, where the send went through but
    /// the delete did not, in both queues).
    Failed(String),
}

/// What a requeue did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub moved: usize,
    pub skipped_by_filter: usize,
    pub skipped_by_limit: usize,
    pub failed: usize,
}

impl Plan {
    /// Makes every chosen message visible in the dead-letter queue again, moving nothing.
    pub async fn release(self, dlq: &dyn Queue) {
        let messages: Vec<_> = self.chosen.into_iter().map(|e| e.message).collect();
        release(dlq, &messages).await;
    }

    /// The summary of a run that moves nothing (a dry run, or a declined confirmation).
    pub fn unmoved(&self) -> Summary {
        Summary {
            moved: 0,
            skipped_by_filter: self.skipped_by_filter,
            skipped_by_limit: self.over_limit.len(),
            failed: 0,
        }
    }

    /// Moves the chosen messages to `main`, at most `rate` a second: each is sent, and only
    /// once the send succeeded deleted from `dlq`. `progress` hears of each message. After
    /// a failure the queue itself reports as unavailable, the rest are left where they are
    /// (and counted as failed): they stay in the dead-letter queue.
    pub async fn execute(
        mut self,
        main: &Arc<dyn Queue>,
        dlq: &Arc<dyn Queue>,
        rate: Option<f64>,
        mut progress: impl FnMut(&DeadLetter, &Moved),
    ) -> Summary {
        let mut summary = self.unmoved();
        let mut pace = rate.map(|per_second| {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / per_second));
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            tick
        });
        let chosen = std::mem::take(&mut self.chosen);
        let mut remaining = chosen.into_iter();
        let mut stopped: Option<String> = None;
        let mut lost = HashSet::new();
        while let Some(entry) = remaining.next() {
            if let Some(pace) = &mut pace {
                pace.tick().await;
            }
            if Instant::now() + HOLD_MARGIN > self.held_until {
                let rest: Vec<&DeadLetter> = std::iter::once(&entry)
                    .chain(remaining.as_slice())
                    .collect();
                lost = self.extend_hold(&**dlq, &rest).await;
            }
            let result = if lost.contains(&entry.message.id) {
                Moved::Failed(
                    "its hold on the dead-letter queue ended before the move; run again".into(),
                )
            } else {
                match move_one(&**main, &**dlq, &entry).await {
                    Ok(()) => Moved::Moved,
                    Err(err) => {
                        if let MoveError::Send(send) = &err
                            && send.is_transient()
                        {
                            stopped =
                                Some(format!("the main queue is unavailable: {}", chain(send)));
                        }
                        Moved::Failed(err.to_string())
                    }
                }
            };
            match &result {
                Moved::Moved => summary.moved += 1,
                Moved::Failed(_) => summary.failed += 1,
            }
            progress(&entry, &result);
            if let Some(why) = &stopped {
                let rest: Vec<_> = remaining.by_ref().collect();
                let not_tried = Moved::Failed(format!("not tried: {why}"));
                for entry in &rest {
                    summary.failed += 1;
                    progress(entry, &not_tried);
                }
                let messages: Vec<_> = rest.into_iter().map(|e| e.message).collect();
                release(&**dlq, &messages).await;
            }
        }
        summary
    }

    /// Hides the messages still to move for another [`MOVE_HOLD`]. Returns those whose
    /// receipt no longer works: another receiver has them now.
    async fn extend_hold(&mut self, dlq: &dyn Queue, rest: &[&DeadLetter]) -> HashSet<MessageId> {
        let mut lost = HashSet::new();
        self.held_until = Instant::now() + MOVE_HOLD;
        for entry in rest {
            if let Err(err) = dlq
                .change_visibility(&entry.message.receipt, MOVE_HOLD)
                .await
            {
                tracing::warn!(error = %chain(&err), message_id = %entry.message.id, "could not extend the hold");
                if matches!(err, QueueError::InvalidReceipt) {
                    lost.insert(entry.message.id.clone());
                }
            }
        }
        lost
    }
}

#[derive(Debug, thiserror::Error)]
enum MoveError {
    #[error("send failed: {}", chain(.0))]
    Send(QueueError),
    #[error(
        "sent, but not deleted from the dead-letter queue ({}): a copy stays there, which the \
         workers' dedupe absorbs if it is requeued again",
        chain(.0)
    )]
    Delete(QueueError),
}

async fn move_one(main: &dyn Queue, dlq: &dyn Queue, entry: &DeadLetter) -> Result<(), MoveError> {
    main.send(requeued(&entry.message))
        .await
        .map_err(MoveError::Send)?;
    dlq.delete(&entry.message.receipt)
        .await
        .map_err(MoveError::Delete)
}
