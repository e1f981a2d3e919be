//! Missed webhooks come back: the recovery loop's passes against the fake GitHub's delivery
//! logs (deliveries made to a webhook whose answer each test sets) and both stores. Each
//! test checks the redeliveries the fake was asked for, the log pages it was asked for, the
//! store's rows and the metrics. The loop under leadership and end to end through the
//! ingress are in `worker::redelivery`.

use std::time::Duration;

use chrono::Utc;
use rstest::rstest;

use crate::common::fake_github::{Endpoint, Failure, FakeGitHub};
use crate::common::stores::{Backend, TestStore};
use crate::common::webhook_sink::WebhookSink;
use crate::common::{job_body, queued_job, sample};
use crate::github::app_for;
use dockhand::config::RedeliverySettings;
use dockhand::github::GitHubApp;
use dockhand::redelivery::{Recovery, RecoveryPass};
use dockhand::store::Store;

const APP: u64 = 4242;
const APP_B: u64 = 4343;
const SECRET: &str = "hook-secret";

struct Stage {
    fake: FakeGitHub,
    sink: WebhookSink,
    test_store: TestStore,
    store: Store,
    github: GitHubApp,
}

async fn stage(backend: Backend, apps: &[u64]) -> Stage {
    // The recorder the metrics are read from.
    dockhand::metrics::install();
    let fake = FakeGitHub::start_apps(apps).await;
    let sink = WebhookSink::start(202).await;
    for app in apps {
        fake.set_webhook(*app, &sink.url, SECRET);
    }
    let test_store = TestStore::new(backend).await;
    let store = test_store.connect().await;
    let github = github_for(&fake).await;
    Stage {
        fake,
        sink,
        test_store,
        store,
        github,
    }
}

async fn github_for(fake: &FakeGitHub) -> GitHubApp {
    let mut settings = fake.settings();
    settings.limits.points_per_minute = 6_000_000;
    app_for(&settings).await.expect("building the App clients")
}

fn settings() -> RedeliverySettings {
    RedeliverySettings {
        interval: Duration::from_secs(1),
        per_second: 100.0,
        ..RedeliverySettings::default()
    }
}

impl Stage {
    fn recovery(&self, settings: RedeliverySettings) -> Recovery {
        Recovery::new(self.store.clone(), &self.github, settings)
    }

    /// A pass, once every redelivery asked for by the last one has been made.
    async fn pass(&self, recovery: &Recovery) -> RecoveryPass {
        self.fake.deliveries_settled().await;
        let pass = recovery.pass().await.expect("a recovery pass");
        self.fake.deliveries_settled().await;
        pass
    }

    /// The delivery ids the fake was asked to redeliver, in order.
    fn asked(&self) -> Vec<u64> {
        self.fake
            .requests_to(Endpoint::Redeliver)
            .iter()
            .map(|r| {
                let id = r.path.trim_start_matches("/app/hook/deliveries/");
                id.trim_end_matches("/attempts").parse().unwrap()
            })
            .collect()
    }

    /// The id of the delivery of `guid` the App's log holds at `index` (0: the first).
    fn delivery_of(&self, app: u64, guid: &str, index: usize) -> u64 {
        self.fake
            .delivery_log(app)
            .iter()
            .filter(|d| d.guid == guid)
            .nth(index)
            .unwrap_or_else(|| panic!("no delivery {index} of {guid}"))
            .id
    }
}

fn metric(series: &str) -> Option<f64> {
    sample(&dockhand::metrics::install().render(), series)
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_deliveries_are_redelivered_once_and_successful_ones_never(
    #[case] backend: Backend,
) {
    let stage = stage(backend, &[APP]).await;
    stage.sink.answer(503);
    let (completed, status) = stage
        .fake
        .deliver(APP, job_body("completed", 2, &["self-hosted"]))
        .await;
    assert_eq!(status, 503);
    let (queued, _) = stage.fake.deliver(APP, queued_job(1)).await;
    stage.sink.answer(202);
    let (fine, status) = stage.fake.deliver(APP, queued_job(3)).await;
    assert_eq!(status, 202);
    let recovery = stage.recovery(settings());

    let first = stage.pass(&recovery).await;

    assert_eq!(
        stage.asked(),
        [
            stage.delivery_of(APP, &queued, 0),
            stage.delivery_of(APP, &completed, 0)
        ],
        "the failed ones, queued events first"
    );
    assert_eq!((first.read, first.failed, first.requested), (3, 2, 2));
    // GitHub delivered them again, with their guids, marked as redeliveries.
    let mut again = stage.sink.received()[3..].to_vec();
    again.sort();
    let mut expected = vec![queued.clone(), completed.clone()];
    expected.sort();
    assert_eq!(again, expected);
    let log = stage.fake.delivery_log(APP);
    assert!(
        log[3..]
            .iter()
            .all(|d| d.redelivery && d.status_code == 202)
    );
    assert!(!stage.sink.received()[3..].contains(&fine));

    let second = stage.pass(&recovery).await;
    let third = stage.pass(&recovery).await;
    assert_eq!(stage.asked().len(), 2, "each failure was redelivered once");
    assert_eq!((second.recovered, second.requested), (2, 0));
    assert_eq!((third.failed, third.requested, third.recovered), (0, 0, 0));
    let requested = r#"dockhand_webhook_redeliveries_total{outcome="requested"}"#;
    let recovered = r#"dockhand_webhook_redeliveries_total{outcome="recovered"}"#;
    assert_eq!(metric(requested), Some(2.0));
    assert_eq!(metric(recovered), Some(2.0));
    assert_eq!(
        metric("dockhand_webhook_unrecovered_oldest_seconds"),
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_got_through_later_or_through_another_app_is_not_redelivered() {
    let stage = stage(Backend::Sqlite, &[APP, APP_B]).await;
    let now = Utc::now();
    // Failed, then delivered again by hand (an operator's "Redeliver") with success.
    stage.fake.log_delivery(APP, "later", "queued", 503, now);
    stage.fake.log_delivery(APP, "later", "queued", 202, now);
    // Failed at App A's webhook, arrived through App B's.
    stage.fake.log_delivery(APP, "elsewhere", "queued", 0, now);
    stage
        .fake
        .log_delivery(APP_B, "elsewhere", "queued", 200, now);
    // Failed at both.
    let both_a = stage.fake.log_delivery(APP, "nowhere", "queued", 502, now);
    let both_b = stage
        .fake
        .log_delivery(APP_B, "nowhere", "queued", 502, now);

    let pass = stage.pass(&stage.recovery(settings())).await;

    assert_eq!(pass.requested, 1);
    assert_eq!(
        stage.asked(),
        [both_b],
        "the newest failure, by its own App"
    );
    let asked = stage.fake.requests_to(Endpoint::Redeliver);
    assert_eq!(asked[0].app, Some(APP_B));
    assert!(both_a < both_b);
    for app in [APP, APP_B] {
        let reads = stage.fake.requests_by_app(app, Endpoint::HookDeliveries);
        assert_eq!(reads.len(), 1, "App {app} read its own log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_read_page_by_page_with_its_cursor_and_then_only_to_the_checkpoint() {
    let stage = stage(Backend::Postgres, &[APP]).await;
    let now = Utc::now();
    let mut failed = Vec::new();
    for i in 0..250_i64 {
        let at = now - chrono::TimeDelta::seconds(600 - i);
        let guid = format!("g{i}");
        let status = if [10, 120, 240].contains(&i) {
            503
        } else {
            202
        };
        let id = stage.fake.log_delivery(APP, &guid, "queued", status, at);
        if status == 503 {
            failed.push(id);
        }
    }
    let recovery = stage.recovery(settings());

    let first = stage.pass(&recovery).await;

    assert_eq!(first.read, 250);
    assert_eq!(
        stage.asked(),
        failed,
        "one failure on each page, oldest first"
    );
    let reads = stage.fake.requests_to(Endpoint::HookDeliveries);
    let queries: Vec<String> = reads.iter().map(|r| r.query.clone().unwrap()).collect();
    assert_eq!(queries[0], "per_page=100");
    assert_eq!(queries.len(), 3, "{queries:?}");
    // The cursors are the fake's: the newest delivery of each next page.
    let log = stage.fake.delivery_log(APP);
    for (query, next) in queries[1..].iter().zip([log[149].id, log[49].id]) {
        assert_eq!(query, &format!("per_page=100&cursor=v1_{next}"));
    }

    // The next pass reads back to the first one's newest delivery: one page. The three
    // redeliveries failed with no answer (nothing to send: these deliveries were logged
    // by hand), so the webhook looks down: one is asked for again, as a probe.
    let second = stage.pass(&recovery).await;
    assert_eq!(stage.fake.count(Endpoint::HookDeliveries), 4);
    assert_eq!((second.requested, second.probes, second.held), (1, 1, 2));
    let first_redelivery = stage.delivery_of(APP, "g10", 1);
    assert_eq!(stage.asked()[3..], [first_redelivery]);
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkpoint_and_the_attempts_survive_a_restart(#[case] backend: Backend) {
    let stage = stage(backend, &[APP]).await;
    let long_ago = Utc::now() - chrono::TimeDelta::minutes(30);
    for i in 0..150 {
        stage
            .fake
            .log_delivery(APP, &format!("old{i}"), "queued", 202, long_ago);
    }
    // The ingress refuses this event (not the webhook as a whole): each ask counts.
    stage.sink.answer(400);
    let (guid, _) = stage.fake.deliver(APP, queued_job(7)).await;
    let first = stage.pass(&stage.recovery(settings())).await;
    assert_eq!((first.requested, first.probes), (1, 0));
    assert_eq!(stage.fake.count(Endpoint::HookDeliveries), 2);
    assert_eq!(stage.asked(), [stage.delivery_of(APP, &guid, 0)]);

    // A new process: its own store handle and App clients, the same database.
    let store = stage.test_store.connect().await;
    let github = github_for(&stage.fake).await;
    let restarted = Recovery::new(store, &github, settings());
    stage.fake.deliveries_settled().await;
    let pass = restarted.pass().await.unwrap();

    // It read one page (back to the checkpoint), and asked only for the failed
    // redelivery: the original was handled before the restart.
    assert_eq!(stage.fake.count(Endpoint::HookDeliveries), 3);
    let reads = stage.fake.requests_to(Endpoint::HookDeliveries);
    assert_eq!(reads[2].query.as_deref(), Some("per_page=100"));
    assert_eq!(pass.requested, 1);
    assert_eq!(
        stage.asked(),
        [
            stage.delivery_of(APP, &guid, 0),
            stage.delivery_of(APP, &guid, 1)
        ]
    );
    // The attempts did too: the third ask is the last one (max_attempts 3), and the next
    // failure gives the event up.
    stage.fake.deliveries_settled().await;
    let third = restarted.pass().await.unwrap();
    stage.fake.deliveries_settled().await;
    let last = restarted.pass().await.unwrap();
    assert_eq!((third.requested, last.requested, last.exhausted), (1, 0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_is_given_up_after_max_attempts_and_counted_until_it_gets_through() {
    let stage = stage(Backend::Sqlite, &[APP]).await;
    // The ingress refuses this event (a 4xx is the event's trouble, not the webhook's).
    stage.sink.answer(422);
    let (guid, _) = stage.fake.deliver(APP, queued_job(8)).await;
    let recovery = stage.recovery(RedeliverySettings {
        max_attempts: 2,
        ..settings()
    });

    let passes = [
        stage.pass(&recovery).await,
        stage.pass(&recovery).await,
        stage.pass(&recovery).await,
        stage.pass(&recovery).await,
    ];

    assert_eq!(
        passes.iter().map(|p| p.requested).collect::<Vec<_>>(),
        [1, 1, 0, 0]
    );
    assert_eq!(passes[2].exhausted, 1);
    assert_eq!(stage.asked().len(), 2);
    assert_eq!(
        stage.sink.received(),
        [guid.clone(), guid.clone(), guid.clone()]
    );
    let exhausted = r#"dockhand_webhook_redeliveries_total{outcome="exhausted"}"#;
    assert_eq!(metric(exhausted), Some(1.0));
    let age = metric("dockhand_webhook_unrecovered_oldest_seconds").unwrap();
    assert!((0.0..60.0).contains(&age), "{age}");

    // Delivered again by hand, successfully: it is recovered, and the gauge falls to 0.
    stage
        .fake
        .log_delivery(APP, &guid, "queued", 202, Utc::now());
    let last = stage.pass(&recovery).await;
    assert_eq!(last.recovered, 1);
    assert_eq!(
        metric("dockhand_webhook_unrecovered_oldest_seconds"),
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivery_still_under_way_is_not_asked_for_again() {
    let stage = stage(Backend::Sqlite, &[APP]).await;
    stage.sink.answer(503);
    let (guid, _) = stage.fake.deliver(APP, queued_job(11)).await;
    let recovery = stage.recovery(settings());
    stage.fake.hold_redeliveries(true);

    let first = recovery.pass().await.unwrap();
    let second = recovery.pass().await.unwrap();

    assert_eq!((first.requested, second.requested), (1, 0));
    assert_eq!(stage.asked(), [stage.delivery_of(APP, &guid, 0)]);
    // GitHub makes it, and it fails too: that failure is asked for.
    stage.fake.hold_redeliveries(false);
    let third = stage.pass(&recovery).await;
    assert_eq!(third.requested, 1);
    assert_eq!(stage.asked()[1], stage.delivery_of(APP, &guid, 1));
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_webhook_still_fails_one_probe_is_asked_for_and_no_attempt_is_spent(
    #[case] backend: Backend,
) {
    let stage = stage(backend, &[APP]).await;
    stage.sink.answer(503);
    let mut guids = Vec::new();
    for job in [21, 22, 23] {
        guids.push(stage.fake.deliver(APP, queued_job(job)).await.0);
    }
    // One attempt each: a probe that counted would give its event up.
    let recovery = stage.recovery(RedeliverySettings {
        max_attempts: 1,
        ..settings()
    });

    // The ingress still answers 503: each pass probes with one event only.
    let outage = [stage.pass(&recovery).await, stage.pass(&recovery).await];
    for pass in &outage {
        assert_eq!(
            (pass.requested, pass.probes, pass.held, pass.exhausted),
            (1, 1, 2, 0)
        );
    }
    let probed = stage.sink.received()[3..].to_vec();
    assert_eq!(probed.len(), 2);
    assert!(probed.iter().all(|g| guids.contains(g)), "{probed:?}");

    // It answers again: the probe gets through, and then the rest follow.
    stage.sink.answer(202);
    let probe = stage.pass(&recovery).await;
    assert_eq!((probe.requested, probe.probes), (1, 1));
    let rest = stage.pass(&recovery).await;
    assert_eq!(
        (rest.requested, rest.probes, rest.recovered, rest.exhausted),
        (2, 0, 1, 0)
    );
    let last = stage.pass(&recovery).await;
    assert_eq!((last.recovered, last.requested), (2, 0));
    assert_eq!(stage.asked().len(), 5);
    assert_eq!(
        metric("dockhand_webhook_unrecovered_oldest_seconds"),
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_stopped_by_shutdown_asks_for_nothing_and_leaves_the_events_due() {
    let stage = stage(Backend::Sqlite, &[APP]).await;
    stage.sink.answer(400);
    stage.fake.deliver(APP, queued_job(31)).await;
    let recovery = stage.recovery(settings());
    let shutdown = tokio_util::sync::CancellationToken::new();
    shutdown.cancel();

    let stopped = recovery.pass_until(&shutdown).await.unwrap();
    let after = stage.pass(&recovery).await;

    assert_eq!((stopped.failed, stopped.requested), (1, 0));
    assert_eq!(after.requested, 1, "still due");
    assert_eq!(stage.asked().len(), 1);
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn an_ask_that_never_showed_up_is_due_again_once_stale(#[case] backend: Backend) {
    let test_store = TestStore::new(backend).await;
    let store = test_store.connect().await;
    let now = Utc::now();
    let failed = dockhand::store::FailedDelivery {
        guid: "g".into(),
        app_id: APP,
        delivery_id: 5,
        action: Some("queued".into()),
        delivered_at: now,
        status_code: 503,
    };
    store.record_failed_deliveries(&[failed]).await.unwrap();
    let since = now - chrono::TimeDelta::hours(1);
    let stale = now - chrono::TimeDelta::minutes(10);
    assert!(store.claim_redelivery("g", 5, stale, true).await.unwrap());
    // Taken: neither due nor to be taken again while the ask is fresh.
    assert!(
        store
            .due_redeliveries(since, stale, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(!store.claim_redelivery("g", 5, stale, true).await.unwrap());
    // Ten minutes on, with no newer failure: the ask was lost, and it is due again.
    let later = Utc::now() + chrono::TimeDelta::seconds(1);
    let due = store.due_redeliveries(since, later, 10).await.unwrap();
    assert_eq!((due.len(), due[0].attempts), (1, 1));
    assert!(store.claim_redelivery("g", 5, later, true).await.unwrap());
    let due = store.due_redeliveries(since, Utc::now() + chrono::TimeDelta::seconds(1), 10);
    assert_eq!(due.await.unwrap()[0].attempts, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_before_the_lookback_are_left_alone() {
    let stage = stage(Backend::Sqlite, &[APP]).await;
    let now = Utc::now();
    stage
        .fake
        .log_delivery(APP, "old", "queued", 503, now - chrono::TimeDelta::hours(2));
    let recent = stage.fake.log_delivery(
        APP,
        "recent",
        "queued",
        503,
        now - chrono::TimeDelta::minutes(30),
    );
    let recovery = stage.recovery(RedeliverySettings {
        lookback: Duration::from_secs(3600),
        ..settings()
    });

    let pass = stage.pass(&recovery).await;

    assert_eq!(stage.asked(), [recent]);
    assert_eq!(pass.failed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_redelivery_is_asked_again_unless_github_refused_it_for_good() {
    let stage = stage(Backend::Postgres, &[APP]).await;
    stage.sink.answer(503);
    let (flaky, _) = stage.fake.deliver(APP, queued_job(9)).await;
    let (gone, _) = stage.fake.deliver(APP, queued_job(10)).await;
    stage.sink.answer(202);
    stage.fake.deliver(APP, queued_job(12)).await;
    let recovery = stage.recovery(settings());
    stage
        .fake
        .fail_next(Endpoint::Redeliver, Failure::Status(502));
    stage
        .fake
        .fail_next(Endpoint::Redeliver, Failure::Status(404));

    let first = stage.pass(&recovery).await;
    assert_eq!((first.refused, first.exhausted, first.requested), (2, 1, 0));

    let second = stage.pass(&recovery).await;
    assert_eq!(
        second.requested, 1,
        "the 502 is asked again, the 404 is not"
    );
    let flaky_id = stage.delivery_of(APP, &flaky, 0);
    let gone_id = stage.delivery_of(APP, &gone, 0);
    assert_eq!(stage.asked(), [flaky_id, gone_id, flaky_id]);
    let refused = r#"dockhand_webhook_redeliveries_total{outcome="refused"}"#;
    assert_eq!(metric(refused), Some(2.0));
    assert_eq!(stage.sink.received().last(), Some(&flaky));
}
