//! Reading one App's delivery log: newest first, page by page, back to where the last pass
//! stopped (less an overlap) or to the lookback, sorting its `workflow_job` deliveries into
//! failed ones and the events that got through.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::github::{GitHubApp, GitHubError, HookDelivery};
use crate::store::{DeliveryCheckpoint, FailedDelivery};

/// The only event dockhand acts on.
const WORKFLOW_JOB: &str = "workflow_job";
/// A pass reads this far behind the last pass's newest delivery: a delivery is logged when
/// its attempt ends (up to GitHub's 10 s timeout after `delivered_at`), so one may show up
/// after a newer one was read.
pub(super) const OVERLAP: Duration = Duration::from_secs(60);
/// Pages read in one pass, at most (100 deliveries each). Beyond, the older deliveries are
/// left unread, with a warning.
pub(super) const MAX_PAGES: usize = 1_000;

/// What one App's log holds since the floor.
#[derive(Debug, Default)]
pub(super) struct Read {
    /// Deliveries read, of any event.
    pub deliveries: usize,
    pub failed: Vec<FailedDelivery>,
    /// The guids of events one of whose deliveries succeeded.
    pub succeeded: HashSet<String>,
    /// The newest delivery read: where the next pass stops.
    pub newest: Option<DeliveryCheckpoint>,
    /// The webhook's answer to the newest delivery read (of any event).
    pub newest_status: Option<u16>,
}

impl Read {
    /// Whether the App's webhook looks down: its newest delivery got no answer, or a 502,
    /// 503 or 504 (a load balancer with no ingress behind it, or an ingress whose queue is
    /// unavailable). A redelivery now would most likely fail too. A 4xx is the event's own
    /// trouble, not the webhook's.
    pub fn webhook_down(&self) -> bool {
        matches!(self.newest_status, Some(0 | 502 | 503 | 504))
    }
}

/// Where reading App `app_id`'s log stops: the last pass's newest delivery less the
/// overlap, never before `since` (the lookback); `since` on the first pass.
pub(super) fn floor(checkpoint: Option<DeliveryCheckpoint>, since: DateTime<Utc>) -> DateTime<Utc> {
    let overlap = chrono::TimeDelta::from_std(OVERLAP).expect("a small overlap");
    checkpoint.map_or(since, |c| (c.delivered_at - overlap).max(since))
}

/// Reads App `app_id`'s log back to `floor`. A failed call fails the read: nothing of it is
/// kept, so the next pass reads the same deliveries again.
pub(super) async fn read(
    github: &GitHubApp,
    app_id: u64,
    floor: DateTime<Utc>,
) -> Result<Read, GitHubError> {
    let mut read = Read::default();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let page = github.hook_deliveries(app_id, cursor.as_deref()).await?;
        let mut reached_floor = page.deliveries.is_empty();
        for delivery in page.deliveries {
            read.deliveries += 1;
            note_newest(&mut read, &delivery);
            if delivery.delivered_at < floor {
                reached_floor = true;
                continue;
            }
            sort(&mut read, app_id, delivery);
        }
        match page.next {
            Some(next) if !reached_floor => cursor = Some(next),
            _ => return Ok(read),
        }
    }
    tracing::warn!(
        github.app = app_id,
        pages = MAX_PAGES,
        "read as many pages of the App's delivery log in one pass; older deliveries are not \
         checked"
    );
    Ok(read)
}

fn note_newest(read: &mut Read, delivery: &HookDelivery) {
    if read.newest.is_none_or(|n| delivery.id > n.delivery_id) {
        read.newest = Some(DeliveryCheckpoint {
            delivered_at: delivery.delivered_at,
            delivery_id: delivery.id,
        });
        read.newest_status = Some(delivery.status_code);
    }
}

fn sort(read: &mut Read, app_id: u64, delivery: HookDelivery) {
    if delivery.event != WORKFLOW_JOB {
        return;
    }
    if delivery.succeeded() {
        read.succeeded.insert(delivery.guid);
        return;
    }
    read.failed.push(FailedDelivery {
        guid: delivery.guid,
        app_id,
        delivery_id: delivery.id,
        action: delivery.action,
        delivered_at: delivery.delivered_at,
        status_code: delivery.status_code,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    #[test]
    fn the_floor_is_the_checkpoint_less_the_overlap_but_never_past_the_lookback() {
        let since = at(0);
        assert_eq!(floor(None, since), since);
        let checkpoint = |s| DeliveryCheckpoint {
            delivered_at: at(s),
            delivery_id: 1,
        };
        assert_eq!(floor(Some(checkpoint(600)), since), at(540));
        assert_eq!(floor(Some(checkpoint(30)), since), since);
    }

    #[test]
    fn only_workflow_job_deliveries_are_sorted_and_the_newest_of_all_is_kept() {
        let delivery = |id, event: &str, code| HookDelivery {
            id,
            guid: format!("g{id}"),
            delivered_at: at(id as i64),
            redelivery: false,
            status_code: code,
            event: event.to_string(),
            action: Some("queued".to_string()),
        };
        let mut read = Read::default();
        for d in [
            delivery(3, "workflow_job", 503),
            delivery(9, "ping", 0),
            delivery(5, "workflow_job", 202),
        ] {
            note_newest(&mut read, &d);
            sort(&mut read, 7, d);
        }
        assert_eq!(read.newest.map(|n| n.delivery_id), Some(9));
        assert!(read.webhook_down(), "the newest (a ping) got no answer");
        assert_eq!(read.failed.len(), 1);
        assert_eq!(read.failed[0].guid, "g3");
        assert_eq!(read.failed[0].app_id, 7);
        assert_eq!(read.succeeded, HashSet::from(["g5".to_string()]));
        for (status, down) in [
            (202, false),
            (0, true),
            (502, true),
            (504, true),
            (401, false),
        ] {
            read.newest_status = Some(status);
            assert_eq!(read.webhook_down(), down, "{status}");
        }
    }
}
