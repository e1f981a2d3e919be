//! One pass over the dead-letter queue that sees each message once, and `dlq list`, which
//! is such a pass that gives every message back.

use std::collections::HashSet;
use std::time::Duration;

use tokio::time::Instant;

use super::DeadLetter;
use crate::queue::{MAX_BATCH, MessageId, Queue, QueueError, ReceivedMessage};
use crate::telemetry::chain;

/// How long `list` hides each message it has seen, so that one scan sees each once.
pub const PEEK_HOLD: Duration = Duration::from_secs(120);
/// How long one receive waits. A long poll, so that an empty answer means an empty queue
/// rather than one sampled SQS host with nothing on it.
const SCAN_WAIT: Duration = Duration::from_secs(1);

/// How long a scan whose messages stay hidden for `hold` may go on: until a quarter of the
/// hold is left, so it stops before the first messages it holds could show again (and be
/// counted twice). The one place this rule lives: the scan stops by it, and `requeue` tells
/// the operator by it how long it ran.
pub fn max_scan_time(hold: Duration) -> Duration {
    hold * 3 / 4
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
/// one) rather than count a message twice: see [`max_scan_time`].
pub(super) struct Scan<'a> {
    dlq: &'a dyn Queue,
    hold: Duration,
    seen: HashSet<MessageId>,
    started: Instant,
    /// The scan stopped for time, not at the end of the queue.
    pub(super) cut_short: bool,
}

impl<'a> Scan<'a> {
    pub(super) fn new(dlq: &'a dyn Queue, hold: Duration) -> Self {
        Self {
            dlq,
            hold,
            seen: HashSet::new(),
            started: Instant::now(),
            cut_short: false,
        }
    }

    /// The next messages this scan has not seen. Empty at the end of the queue, or once the
    /// scan has run for [`max_scan_time`].
    pub(super) async fn next(&mut self) -> Result<Vec<ReceivedMessage>, QueueError> {
        if self.started.elapsed() > max_scan_time(self.hold) {
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
pub(super) async fn release(dlq: &dyn Queue, messages: &[ReceivedMessage]) {
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
