//! The dashboard and the alerts name only metrics dockhand exports. One process runs every
//! path (webhooks, a real launch through the fake GitHub and moto's ECS, a job followed to
//! completion, a dead-lettered message, a configuration reload), then its `/metrics` is
//! scraped and every `dockhand_*` name in deploy/grafana/dockhand.json and
//! deploy/prometheus/alerts.yml must appear in it.

use crate::common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::fake_github::FakeGitHub;
use common::moto_ecs::MotoEcs;
use common::process::eventually;
use common::*;
use dockhand::config::ConfigSource;
use dockhand::queue::OutgoingMessage;
use dockhand::startup::{Application, Reloading, Roles};
use tokio_util::sync::CancellationToken;

/// Files whose expressions must name exported metrics only.
const FILES: [&str; 2] = [
    "deploy/grafana/dockhand.json",
    "deploy/prometheus/alerts.yml",
];

/// Every `dockhand_*` metric name in a file's text.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("dockhand_") {
        let preceded_by_word = rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if !preceded_by_word {
            names.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    names
}

/// The metric names in a Prometheus scrape (histograms as their _bucket/_sum/_count).
fn exported(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

#[test]
fn names_are_read_from_expressions() {
    let names = metric_names(
        r#"sum(rate(dockhand_jobs_total{outcome="launched"}[5m])) / x_dockhand_not "dockhand_queue_messages""#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["dockhand_jobs_total", "dockhand_queue_messages"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_and_alerts_use_is_exported() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut wanted = BTreeSet::new();
    for file in FILES {
        let text = std::fs::read_to_string(root.join(file))
            .unwrap_or_else(|e| panic!("reading {file}: {e}"));
        // YAML comments may mention a metric without using it.
        let text: String = text
            .lines()
            .map(|l| match file.ends_with(".yml") {
                true => l.split('#').next().unwrap_or_default(),
                false => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let names = metric_names(&text);
        assert!(!names.is_empty(), "{file} names no dockhand metric");
        wanted.extend(names);
    }

    let dir = tempfile::tempdir().unwrap();
    let github = FakeGitHub::start(4242).await;
    let ecs = MotoEcs::setup().await;
    let mut settings = embedded_settings(&dir);
    settings.aws = moto_aws();
    settings.github = github.settings();
    settings.store = common::stores::sqlite_settings(&dir);
    settings.pools[0].ecs = Some(ecs.launch_settings());
    settings.worker.depth_poll_interval = Duration::from_millis(200);
    settings.reload.interval = Duration::from_secs(1);
    let config = dir.path().join("dockhand.toml");
    std::fs::write(&config, toml::to_string(&settings).unwrap()).unwrap();
    let reloading = Reloading {
        source: ConfigSource::File(config),
        dry_run: false,
    };
    let app = Application::build_reloading(&settings, Roles::SERVE, Some(reloading))
        .await
        .unwrap();
    let webhook = format!("http://{}{}", app.webhook_addr(), settings.server.path);
    let metrics_url = format!("http://{}/metrics", app.admin_addr());
    let queue = app.queue();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(app.run_until_stopped(shutdown.clone()));

    // A job launched, then followed through in_progress to completed; a poison message
    // dead-lettered; a delivery for no pool.
    let client = reqwest::Client::new();
    let deliver = |body: Vec<u8>| {
        let request = signed_request(&client, &webhook, &uuid::Uuid::new_v4().to_string(), body);
        async move {
            let status = request.send().await.unwrap().status();
            assert!(status.is_success(), "{status}");
        }
    };
    deliver(queued_job(501)).await;
    let scrape = || async {
        reqwest::get(&metrics_url)
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    eventually("the launch", Duration::from_secs(30), || async {
        scrape()
            .await
            .contains("outcome=\"launched\"")
            .then_some(())
    })
    .await;
    deliver(job_body("in_progress", 501, &["self-hosted", "linux"])).await;
    deliver(job_body("completed", 501, &["self-hosted", "linux"])).await;
    deliver(job_body("queued", 502, &["self-hosted", "windows"])).await;
    queue
        .send(OutgoingMessage {
            body: "poison".into(),
            attributes: Default::default(),
            delay: std::time::Duration::ZERO,
        })
        .await
        .unwrap();

    // Gauges and reload counters arrive on their own schedule: wait for them, then name
    // whatever is still missing.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let missing = loop {
        let have = exported(&scrape().await);
        let missing: Vec<String> = wanted.difference(&have).cloned().collect();
        if missing.is_empty() || std::time::Instant::now() > deadline {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        missing.is_empty(),
        "named in {FILES:?} but not exported: {missing:?}\n{}",
        scrape().await
    );
    shutdown.cancel();
    running.await.unwrap().unwrap();
}
