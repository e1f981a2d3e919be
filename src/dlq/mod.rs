//! Dead-letter tooling: see what died and why (`dockhand dlq list`), and move it back to
//! the main queue (`dockhand requeue`) without losing a message or launching a job twice.
//!
//! Both read the dead-letter queue by receiving from it: a received message is hidden from
//! other receivers for a while, which is what lets one scan see each message once.
//! - `list` hides each message for [`PEEK_HOLD`] and makes all of them visible again at
//!   the end.
//! - A scan that runs long (a large queue, a slow endpoint) stops before the first message
//!   it holds could show again ([`max_scan_time`]), and says so, rather than count a
//!   message twice.
//! - `requeue` hides the messages it chose for [`MOVE_HOLD`], extending that while it
//!   works, and makes the rest visible again as soon as it has chosen.
//!
//! A move is a send to the main queue, then a delete from the dead-letter queue, never the
//! other way round. A crash in between leaves one copy in each queue, and the workers'
//! dedupe by job id absorbs the extra one. SQS's own StartMessageMoveTask is not used: it
//! cannot filter, and moto does not implement it.
//!
//! `message` reads a dead letter and writes its requeued copy; `scan` is the pass and
//! `list`; `filter` chooses; `requeue` holds and moves; `report` prints for the CLI.

mod filter;
mod message;
pub mod report;
mod requeue;
mod scan;

pub use filter::{Filter, Refusal, Selection};
pub use message::{DeadLetter, REDRIVE_REASON, requeued};
pub use requeue::{MOVE_HOLD, Moved, Plan, Summary, plan};
pub use scan::{Listing, PEEK_HOLD, list, max_scan_time};
