//! Dead-letter tooling: see what died and why (`dockhand dlq list`), and move it back to
//! the main queue (`dockhand requeue`) without losing a message or launching a job twice.
//!
//! Both read the dead-letter queue by receiving from it: a received message is hidden from
//! other receivers for a while, which is what lets one scan see each message once.
//! - `list` hides each message for [`PEEK_HOLD`] and makes all of them visible again at
//!   the end.
//! - A scan that runs long (a large queue, a slow endpoint) stops before the first message
//!   it holds could show again, and says so, rather than count a message twice.
//! - `requeue` hides the messages it chose for [`MOVE_HOLD`], extending that while it
//!   works, and makes the rest visible again as soon as it has chosen.
//!
//! A move is a send to the main queue, then a delete from the dead-letter queue, never the
//! other way round. A crash in between leaves one copy in each queue, and the workers'
//! dedupe by job id absorbs the extra one. SQS's own StartMessageMoveTask is not used: it
//! cannot filter, and moto does not implement it.

pub mod report;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::{Instant, MissedTickBehavior};

use crate::queue::envelope::{ATTR_ACTION, ATTR_JOB_ID, Envelope};
use crate::queue::{
    ATTR_DEAD_LETTER_REASON, ATTR_DEAD_LETTER_RECEIVES, ATTR_PREVIOUS_DEAD_LETTER_REASON,
    ATTR_REQUEUE_COUNT, MAX_BATCH, MessageId, OutgoingMessage, Queue, QueueError, ReceivedMessage,
};
use crate::telemetry::chain;

/// How long `list` hides each message it has seen, so that one scan sees each once.
pub const PEEK_HOLD: Duration = Duration::from_secs(120);
/// How long `requeue` hides the messages it chose; extended while the moves go on.
pub const MOVE_HOLD: Duration = Duration::from_secs(300);
/// Extend the hold when less than this is left of it.
const HOLD_MARGIN: Duration = Duration::from_secs(60);
/// How long one receive waits. A long poll, so that an empty answer means an empty queue
/// rather than one sampled SQS host with nothing on it.
const SCAN_WAIT: Duration = Duration::from_secs(1);

/// The reason shown for a message that carries none: SQS's own redrive moved it.
pub const REDRIVE_REASON: &str =
    "none recorded: moved by the queue's redrive policy after maxReceiveCount receives";

/// One dead-lettered message, as `dlq list` shows it.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub job_id: Option<u64>,
    pub repo: Option<String>,
    pub action: Option<String>,
    pub pool: Option<String>,
    /// How many times it was received before it was dead-lettered. Where SQS's redrive
    /// moved it, SQS's approximate count, which earlier scans of the DLQ also raised.
    pub receives: u32,
    /// How many times `dockhand requeue` has already moved it back.
    pub requeues: u32,
    /// When the ingress accepted the delivery; for a body that is not an envelope, when the
    /// message was sent.
    pub since: Option<DateTime<Utc>>,
    pub reason: String,
    pub message: ReceivedMessage,
}

impl DeadLetter {
    /// Reads what it can: the envelope first, then the attributes (a poison body has only
    /// those).
    pub fn read(message: ReceivedMessage) -> Self {
        let envelope = Envelope::decode(&message.body).ok();
        let attr = |name: &str| message.attributes.get(name);
        let number = |name: &str| attr(name).and_then(|v| v.parse::<u64>().ok());
        Self {
            job_id: match &envelope {
                Some(e) => Some(e.event.job.id.0),
                None => number(ATTR_JOB_ID),
            },
            repo: envelope
                .as_ref()
                .map(|e| e.event.repository.full_name.clone()),
            action: match &envelope {
                Some(e) => Some(e.event.action.as_str().to_string()),
                None => attr(ATTR_ACTION).cloned(),
            },
            pool: envelope.as_ref().and_then(|e| e.pool.clone()),
            receives: number(ATTR_DEAD_LETTER_RECEIVES)
                .map(|n| n as u32)
                // Our own receive is in SQS's count; the earlier ones are not ours to tell.
                .unwrap_or(message.receive_count.saturating_sub(1)),
            requeues: requeue_count(&message),
            since: envelope.as_ref().map(|e| e.received_at).or(message.sent_at),
            reason: attr(ATTR_DEAD_LETTER_REASON)
                .cloned()
                .unwrap_or_else(|| REDRIVE_REASON.to_string()),
            message,
        }
    }

    /// How long ago [`DeadLetter::since`] was.
    pub fn age(&self, now: DateTime<Utc>) -> Option<Duration> {
        self.since.map(|t| (now - t).to_std().unwrap_or_default())
    }
}

fn requeue_count(message: &ReceivedMessage) -> u32 {
    message
        .attributes
        .get(ATTR_REQUEUE_COUNT)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// What `list` found.
#[derive(Debug)]
pub struct Listing {
    pub entries: Vec<DeadLetter>,
    /// False when the scan stopped for time before reaching the end of the queue.
    pub complete: bool,
}

/// Lists up to `max` dead-lettered messages without consuming them: each is received,
/// hidden for [`PEEK_HOLD`] while the scan goes on, then made visible again.
pub async fn list(dlq: &dyn Queue, max: usize) -> Result<Listing, QueueError> {
    let mut scan = Scan::new(dlq, PEEK_HOLD);
    let mut held = Vec::new();
    let scanned = loop {
        if held.len() >= max {
            break Ok(());
        }
        match scan.next().await {
            Ok(fresh) if fresh.is_empty() => break Ok(()),
            Ok(fresh) => held.extend(fresh),
            Err(err) => break Err(err),
        }
    };
    release(dlq, &held).await;
    scanned?;
    Ok(Listing {
        entries: held.into_iter().take(max).map(DeadLetter::read).collect(),
        complete: !scan.cut_short,
    })
}

/// One pass over a queue that sees each message once: what it receives stays hidden for
/// `hold`, and it stops before the first of those could show again (a slow queue, a large
/// one) rather than count a message twice.
struct Scan<'a> {
    dlq: &'a dyn Queue,
    hold: Duration,
    seen: HashSet<MessageId>,
    started: Instant,
    /// The scan stopped for time, not at the end of the queue.
    cut_short: bool,
}

impl<'a> Scan<'a> {
    fn new(dlq: &'a dyn Queue, hold: Duration) -> Self {
        Self {
            dlq,
            hold,
            seen: HashSet::new(),
            started: Instant::now(),
            cut_short: false,
        }
    }

    /// The next messages this scan has not seen. Empty at the end of the queue, or when a
    /// quarter of the hold is all that is left.
    async fn next(&mut self) -> Result<Vec<ReceivedMessage>, QueueError> {
        if self.started.elapsed() > self.hold * 3 / 4 {
            self.cut_short = true;
            tracing::warn!(
                seen = self.seen.len(),
                "stopping the scan before the first messages it holds show again"
            );
            return Ok(Vec::new());
        }
        let batch = self
            .dlq
            .receive_with_visibility(MAX_BATCH, SCAN_WAIT, self.hold)
            .await?;
        Ok(batch
            .into_iter()
            .filter(|m| self.seen.insert(m.id.clone()))
            .collect())
    }
}

/// Makes messages visible again; one that cannot be simply reappears when its hold ends.
async fn release(dlq: &dyn Queue, messages: &[ReceivedMessage]) {
    for message in messages {
        if let Err(err) = dlq
            .change_visibility(&message.receipt, Duration::ZERO)
            .await
        {
            tracing::warn!(
                error = %chain(&err),
                message_id = %message.id,
                "could not release a dead-lettered message; it reappears when its hold ends"
            );
        }
    }
}

/// Which dead-lettered messages to requeue. An empty filter matches everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub job_ids: Vec<u64>,
    /// `owner/name`, compared case-insensitively as GitHub does.
    pub repos: Vec<String>,
    pub actions: Vec<String>,
    pub older_than: Option<Duration>,
    pub newer_than: Option<Duration>,
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.job_ids.is_empty()
            && self.repos.is_empty()
            && self.actions.is_empty()
            && self.older_than.is_none()
            && self.newer_than.is_none()
    }

    pub fn matches(&self, entry: &DeadLetter, now: DateTime<Utc>) -> bool {
        let age = entry.age(now);
        (self.job_ids.is_empty() || entry.job_id.is_some_and(|id| self.job_ids.contains(&id)))
            && (self.repos.is_empty()
                || entry
                    .repo
                    .as_ref()
                    .is_some_and(|r| self.repos.iter().any(|f| f.eq_ignore_ascii_case(r))))
            && (self.actions.is_empty()
                || entry
                    .action
                    .as_ref()
                    .is_some_and(|a| self.actions.contains(a)))
            && self
                .older_than
                .is_none_or(|limit| age.is_some_and(|a| a > limit))
            && self
                .newer_than
                .is_none_or(|limit| age.is_some_and(|a| a < limit))
    }
}

/// What to requeue, and the guard rails.
#[derive(Debug, Clone)]
pub struct Selection {
    pub filter: Filter,
    /// Every message (the filter must then be empty).
    pub all: bool,
    /// At most this many, the first found.
    pub max: Option<usize>,
    /// Skip messages already requeued this many times...
    pub max_requeues: u32,
    /// ...unless forced.
    pub force: bool,
}

/// Why a requeue was refused before it touched the queue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "refusing to requeue without a filter: pass --all to requeue every dead-lettered \
         message, or choose with --job-id, --repo, --action, --older-than, --newer-than or --max"
    )]
    NoFilter,
    #[error(
        "refusing to requeue without confirmation: stdin is not a terminal, so pass --yes \
         (see what would move with --dry-run first)"
    )]
    NotConfirmed,
}

impl Selection {
    /// Refuses a selection that names nothing: requeueing everything must be asked for.
    pub fn check(&self) -> Result<(), Refusal> {
        if self.filter.is_empty() && !self.all && self.max.is_none() {
            return Err(Refusal::NoFilter);
        }
        Ok(())
    }
}

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

/// The message to send back: the same body and attributes, with the requeue count raised
/// and the dead-letter bookkeeping of this death moved aside, so that a later death is
/// reported with its own reason.
pub fn requeued(message: &ReceivedMessage) -> OutgoingMessage {
    let mut out = OutgoingMessage::from(message);
    out.attributes.insert(
        ATTR_REQUEUE_COUNT.to_string(),
        (requeue_count(message) + 1).to_string(),
    );
    out.attributes.remove(ATTR_DEAD_LETTER_RECEIVES);
    if let Some(reason) = out.attributes.remove(ATTR_DEAD_LETTER_REASON) {
        out.attributes
            .insert(ATTR_PREVIOUS_DEAD_LETTER_REASON.to_string(), reason);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::ReceiptHandle;

    fn dead(attributes: &[(&str, &str)], body: &str, sent_minutes_ago: i64) -> DeadLetter {
        DeadLetter::read(ReceivedMessage {
            id: MessageId("m".into()),
            receipt: ReceiptHandle("r".into()),
            body: body.into(),
            attributes: attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            receive_count: 4,
            sent_at: Some(Utc::now() - chrono::Duration::minutes(sent_minutes_ago)),
        })
    }

    #[test]
    fn a_poison_body_is_read_from_its_attributes_and_sqs_redrive_has_its_own_reason() {
        let entry = dead(&[("job-id", "12"), ("action", "queued")], "garbage", 5);
        assert_eq!(entry.job_id, Some(12));
        assert_eq!(entry.action.as_deref(), Some("queued"));
        assert_eq!(entry.repo, None);
        assert_eq!(entry.reason, REDRIVE_REASON);
        // SQS's count, less this receive.
        assert_eq!(entry.receives, 3);
        let age = entry.age(Utc::now()).unwrap();
        assert!((299..=301).contains(&age.as_secs()), "{age:?}");
    }

    #[test]
    fn filters_combine_and_compare_repos_case_insensitively() {
        let mut entry = dead(&[("job-id", "12"), ("action", "queued")], "x", 90);
        entry.repo = Some("Octo/Hello".into());
        let now = Utc::now();
        let filter = |f: Filter| f.matches(&entry, now);
        assert!(filter(Filter::default()));
        assert!(filter(Filter {
            repos: vec!["octo/hello".into()],
            job_ids: vec![3, 12],
            ..Filter::default()
        }));
        assert!(!filter(Filter {
            repos: vec!["octo/hello".into()],
            actions: vec!["completed".into()],
            ..Filter::default()
        }));
        let hour = Duration::from_secs(3600);
        assert!(filter(Filter {
            older_than: Some(hour),
            ..Filter::default()
        }));
        assert!(!filter(Filter {
            newer_than: Some(hour),
            ..Filter::default()
        }));
    }

    #[test]
    fn a_requeued_message_counts_the_requeue_and_moves_the_reason_aside() {
        let message = ReceivedMessage {
            id: MessageId("m".into()),
            receipt: ReceiptHandle("r".into()),
            body: "{}".into(),
            attributes: [
                ("job-id", "1"),
                ("requeue-count", "2"),
                ("dead-letter-reason", "ECS: quota"),
                ("dead-letter-receives", "1"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            receive_count: 1,
            sent_at: None,
        };
        let out = requeued(&message);
        assert_eq!(out.body, "{}");
        let attributes: Vec<(&str, &str)> = out
            .attributes
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            attributes,
            [
                ("job-id", "1"),
                ("previous-dead-letter-reason", "ECS: quota"),
                ("requeue-count", "3"),
            ]
        );
    }

    #[test]
    fn a_selection_must_name_something() {
        let mut selection = Selection {
            filter: Filter::default(),
            all: false,
            max: None,
            max_requeues: 3,
            force: false,
        };
        assert_eq!(selection.check(), Err(Refusal::NoFilter));
        selection.max = Some(5);
        assert_eq!(selection.check(), Ok(()));
        selection.max = None;
        selection.all = true;
        assert_eq!(selection.check(), Ok(()));
    }
}
