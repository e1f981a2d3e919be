//! The delivery log: paging by cursor, each App's own log, redeliveries, expiry.

use super::*;

fn hook(job: u64, action: &'static str) -> Arc<Webhook> {
    Arc::new(Webhook {
        job,
        action,
        installation: 4242,
        repository_id: 600_001,
        body: format!("{{\"job\":{job}}}"),
    })
}

fn log_of(attempts: &[(u64, &str, Attempt)]) -> DeliveryLog {
    let mut log = DeliveryLog::default();
    let at = Utc::now();
    for (n, (app, guid, attempt)) in attempts.iter().enumerate() {
        let hook = hook(n as u64, "queued");
        log.record(*app, &hook, guid, at, Duration::from_millis(3), *attempt);
    }
    log
}

/// Walks App `app`'s log page by page, as a client follows the `next` cursors.
fn walk(log: &DeliveryLog, app: u64, per_page: usize) -> (Vec<u64>, usize) {
    let (mut ids, mut pages, mut cursor) = (Vec::new(), 0, None);
    loop {
        let page = log.page(app, per_page, cursor.as_deref(), None).unwrap();
        pages += 1;
        ids.extend(page.deliveries.iter().map(|d| d.id));
        match page.next {
            Some(next) => cursor = Some(next),
            None => return (ids, pages),
        }
    }
}

#[test]
fn attempts_show_githubs_status_and_code() {
    let cases = [
        (Attempt::Answered(202), "OK", 202, true),
        (
            Attempt::Answered(503),
            "Invalid HTTP Response: 503",
            503,
            false,
        ),
        (
            Attempt::Answered(401),
            "Invalid HTTP Response: 401",
            401,
            false,
        ),
        (Attempt::FailedToConnect, "failed to connect", 0, false),
        (Attempt::TimedOut, "timed out", 0, false),
    ];
    for (attempt, status, code, ok) in cases {
        assert_eq!(
            (
                attempt.status().as_str(),
                attempt.status_code(),
                attempt.succeeded()
            ),
            (status, code, ok),
            "{attempt:?}"
        );
    }
}

#[test]
fn a_walk_by_cursor_lists_every_delivery_once_newest_first_across_pages() {
    let attempts: Vec<(u64, String, Attempt)> = (0..250)
        .map(|n| (31_337, format!("guid-{n}"), Attempt::Answered(202)))
        .collect();
    let attempts: Vec<(u64, &str, Attempt)> = attempts
        .iter()
        .map(|(a, g, s)| (*a, g.as_str(), *s))
        .collect();
    let log = log_of(&attempts);
    let (ids, pages) = walk(&log, 31_337, 100);
    assert_eq!(pages, 3);
    let expected: Vec<u64> = (FIRST_ID..FIRST_ID + 250).rev().collect();
    assert_eq!(ids, expected);
    // Exactly full pages: the last page names no next one.
    let (ids, pages) = walk(&log_of(&attempts[..200]), 31_337, 100);
    assert_eq!((ids.len(), pages), (200, 2));
}

#[test]
fn each_app_has_its_own_log_and_its_cursors_are_refused_in_another() {
    let log = log_of(&[
        (31_337, "a", Attempt::Answered(202)),
        (31_338, "a", Attempt::FailedToConnect),
        (31_337, "b", Attempt::Answered(500)),
        (31_337, "c", Attempt::Answered(202)),
    ]);
    let first = log.page(31_337, 2, None, None).unwrap();
    let guids: Vec<&str> = first.deliveries.iter().map(|d| d.guid.as_str()).collect();
    assert_eq!(guids, ["c", "b"]);
    let next = first.next.unwrap();
    assert_eq!(next, format!("v1_{FIRST_ID}"));
    assert_eq!(
        log.page(31_338, 2, Some(&next), None).unwrap_err(),
        BadCursor
    );
    for bad in ["", "v1_", "v1_x", "12000000001", "v2_12000000001", "v1_999"] {
        assert_eq!(
            log.page(31_337, 2, Some(bad), None).unwrap_err(),
            BadCursor,
            "{bad}"
        );
    }
    let other = log.page(31_338, 30, None, None).unwrap();
    assert_eq!(other.deliveries.len(), 1);
    assert!(log.page(1, 30, None, None).unwrap().deliveries.is_empty());
    assert!(
        log.event_of(31_338, FIRST_ID).is_none(),
        "App 31337's delivery"
    );
    assert_eq!(log.event_of(31_338, FIRST_ID + 1).unwrap().1, "a");
}

#[test]
fn a_guid_logged_again_is_a_redelivery_of_the_same_event() {
    let mut log = DeliveryLog::default();
    let (queued, at) = (hook(7, "queued"), Utc::now());
    let ms = Duration::from_millis(1);
    let first = log.record(31_337, &queued, "g", at, ms, Attempt::FailedToConnect);
    let again = log.record(31_337, &queued, "g", at, ms, Attempt::Answered(202));
    assert!(again > first);
    let page = log.page(31_337, 30, None, None).unwrap();
    let flags: Vec<(u64, bool, u16)> = page
        .deliveries
        .iter()
        .map(|d| (d.id, d.redelivery, d.attempt.status_code()))
        .collect();
    assert_eq!(flags, [(again, true, 202), (first, false, 0)]);
    let (event, guid) = log.event_of(31_337, first).unwrap();
    assert_eq!(
        (event.job, event.body.as_str(), guid.as_str()),
        (7, "{\"job\":7}", "g")
    );
    let json = page.deliveries[1].json();
    assert_eq!(json["status"], "failed to connect");
    assert_eq!(json["event"], "workflow_job");
    assert_eq!(json["action"], "queued");
    assert_eq!(json["installation_id"], 4242);
    assert!(json.get("job").is_none());
}

#[test]
fn a_status_filter_pages_over_the_deliveries_it_admits() {
    let attempts: Vec<(u64, String, Attempt)> = (0..10)
        .map(|n| {
            let attempt = if n % 2 == 0 {
                Attempt::Answered(202)
            } else {
                Attempt::Answered(503)
            };
            (31_337, format!("g{n}"), attempt)
        })
        .collect();
    let attempts: Vec<(u64, &str, Attempt)> = attempts
        .iter()
        .map(|(a, g, s)| (*a, g.as_str(), *s))
        .collect();
    let log = log_of(&attempts);
    let failed = Some(StatusFilter::Failure);
    let first = log.page(31_337, 3, None, failed).unwrap();
    let guids: Vec<&str> = first.deliveries.iter().map(|d| d.guid.as_str()).collect();
    assert_eq!(guids, ["g9", "g7", "g5"]);
    let rest = log.page(31_337, 3, first.next.as_deref(), failed).unwrap();
    let guids: Vec<&str> = rest.deliveries.iter().map(|d| d.guid.as_str()).collect();
    assert_eq!(
        (guids.as_slice(), rest.next),
        (["g3", "g1"].as_slice(), None)
    );
}

#[test]
fn deliveries_older_than_three_days_expire_with_their_events() {
    let mut log = DeliveryLog::default();
    let now = Utc::now();
    let old = now - chrono::Duration::days(3) - chrono::Duration::seconds(1);
    let ms = Duration::from_millis(1);
    let stale = log.record(
        31_337,
        &hook(1, "queued"),
        "old",
        old,
        ms,
        Attempt::TimedOut,
    );
    let cursor = format!("v1_{stale}");
    assert!(log.page(31_337, 30, Some(&cursor), None).is_ok());
    log.record(
        31_337,
        &hook(2, "queued"),
        "new",
        now,
        ms,
        Attempt::Answered(202),
    );
    let page = log.page(31_337, 30, None, None).unwrap();
    assert_eq!(page.deliveries.len(), 1);
    assert_eq!(page.deliveries[0].guid, "new");
    assert!(log.event_of(31_337, stale).is_none());
    assert_eq!(
        log.page(31_337, 30, Some(&cursor), None).unwrap_err(),
        BadCursor
    );
}
