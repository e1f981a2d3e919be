//! The `dockhand` binary itself: serve, send-event, config check, and a clean exit on
//! SIGTERM.

use crate::common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::process::{BIN, LINUX_POOL, free_port, serve_config, wait_until_ready};
use common::*;
use dockhand::config::EmbeddedQueueSettings;
use dockhand::queue::embedded::EmbeddedQueue;

fn dockhand(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("RUST_LOG", "info")
        .env_remove("DOCKHAND_CONFIG")
        .stdin(Stdio::null());
    cmd
}

fn write_config(dir: &Path, webhook_port: u16, admin_port: u16) -> std::path::PathBuf {
    let path = dir.join("dockhand.toml");
    let secret = format!(r#"{{ file = "{}" }}"#, dir.join("secret").display());
    let text = serve_config(dir, webhook_port, admin_port, &secret, LINUX_POOL);
    std::fs::write(&path, text).unwrap();
    std::fs::write(dir.join("secret"), format!("{SECRET}\n")).unwrap();
    path
}

#[tokio::test]
async fn serve_takes_a_send_event_to_a_dry_run_launch_shows_it_in_metrics_and_exits_0_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (webhook_port, admin_port) = (free_port(), free_port());
    let config = write_config(dir.path(), webhook_port, admin_port);
    let config = config.to_str().unwrap();
    let mut serve = dockhand(&["serve", "--config", config])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let admin = format!("http://127.0.0.1:{admin_port}");
    wait_until_ready(&admin).await;

    let sent = dockhand(&["send-event", "--config", config, "--job-id", "31337"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&sent.stdout);
    assert!(
        sent.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    assert!(stdout.contains("HTTP 202"), "{stdout}");
    assert!(stdout.contains("\"outcome\":\"enqueued\""), "{stdout}");

    // The worker in the same process takes it all the way to a (dry-run) launch.
    let store = dockhand::store::Store::connect(&dockhand::config::StoreSettings {
        url: format!("sqlite://{}", dir.path().join("dockhand.db").display()),
        ..Default::default()
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let job = store.job(dockhand::domain::JobId(31337)).await.unwrap();
        if let Some(job) = job.filter(|j| j.launch == dockhand::store::LaunchState::DryRun) {
            assert_eq!(job.runner_name.as_deref(), Some("dh-linux-x64-31337-1"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the job never reached a dry-run launch"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let queue = EmbeddedQueue::open(&EmbeddedQueueSettings {
        path: dir.path().join("queue.db"),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(
        drain(&queue).await.is_empty(),
        "the message was deleted once recorded"
    );

    let metrics = reqwest::get(format!("{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        sample(
            &metrics,
            "dockhand_webhook_requests_total{event=\"workflow_job\",action=\"queued\",outcome=\"enqueued\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        metrics.contains("# HELP dockhand_webhook_requests_total"),
        "{metrics}"
    );

    let killed = Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = wait_with_timeout(&mut serve, Duration::from_secs(20));
    assert!(status.success(), "exit status {status:?}");

    let mut logs = String::new();
    serve
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    let request_line = logs
        .lines()
        .find(|l| l.contains("\"job.id\":31337"))
        .unwrap_or_else(|| panic!("no request log line in:\n{logs}"));
    let line: serde_json::Value = serde_json::from_str(request_line).expect("JSON logs");
    assert_eq!(line["outcome"], "enqueued");
    assert_eq!(line["job.action"], "queued");
    assert!(line["github.delivery"].is_string());
    assert!(!logs.contains(SECRET), "the webhook secret was logged");
    assert!(!logs.contains("hooks_url"), "the webhook body was logged");
    assert!(logs.contains("shutting down"), "{logs}");
    assert!(logs.contains("dry run: would launch"), "{logs}");
    assert!(logs.contains("worker stopped"), "{logs}");
}

/// Runs `dockhand` to its end: exit success, stdout, stderr.
fn run(args: &[&str]) -> (bool, String, String) {
    let out = dockhand(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn jobs_show_tells_a_sent_jobs_story_and_the_admin_routes_need_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let (webhook_port, admin_port) = (free_port(), free_port());
    let config = write_config(dir.path(), webhook_port, admin_port);
    let config = config.to_str().unwrap();
    let mut serve = dockhand(&["serve", "--config", config])
        .env("DOCKHAND_ADMIN__TOKEN__VALUE", "adm1n-t0ken")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let admin = format!("http://127.0.0.1:{admin_port}");
    wait_until_ready(&admin).await;
    let (sent, out, err) = run(&["send-event", "--config", config, "--job-id", "4242"]);
    assert!(sent, "{out}{err}");

    // `jobs show` once the worker has taken the job to its (dry-run) launch.
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let (ok, text, err) = run(&["jobs", "show", "4242", "--config", config]);
        if ok && text.contains("dry run") {
            break text;
        }
        assert!(Instant::now() < deadline, "never told: {text}{err}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut lines = text.lines();
    let first = lines.next().unwrap();
    assert!(
        first.starts_with("job 4242: dry run: would have launched runner dh-linux-x64-4242-1 at "),
        "{text}"
    );
    assert!(
        text.contains("repo octo-org/hello-world, pool linux-x64, launch dry_run, GitHub queued"),
        "{text}"
    );
    for (event, what) in [
        ("received", "delivery "),
        ("matched", "pool linux-x64"),
        ("claimed", "attempt 1"),
        ("dry_run", "would launch runner dh-linux-x64-4242-1"),
    ] {
        assert!(
            text.lines()
                .any(|l| l.contains(&format!(" {event} ")) && l.contains(what)),
            "{event}: {what} in\n{text}"
        );
    }
    let (ok, json, _) = run(&[
        "jobs", "show", "4242", "--output", "json", "--config", config,
    ]);
    assert!(ok);
    let story: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        first,
        format!("job 4242: {}", story["headline"].as_str().unwrap())
    );
    let kinds: Vec<&str> = story["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["received", "matched", "claimed", "dry_run"]);
    assert_eq!(story["job"]["launch"], "dry_run");

    // An unknown job says so, and where it looked; exit 1.
    let (ok, out, err) = run(&["jobs", "show", "999", "--config", config]);
    assert!(!ok && out.is_empty(), "{out}");
    let db = format!("sqlite://{}", dir.path().join("dockhand.db").display());
    assert!(
        err.contains(&format!("job 999 is not in the store {db}")),
        "{err}"
    );

    let (ok, list, _) = run(&["jobs", "list", "--state", "dry_run", "--config", config]);
    assert!(ok);
    assert!(list.starts_with("JOB "), "{list}");
    assert!(list.lines().any(|l| l.starts_with("4242 ")), "{list}");
    assert!(list.ends_with("1 jobs\n"), "{list}");
    let (ok, list, _) = run(&["jobs", "list", "--state", "launched", "--config", config]);
    assert!(ok && list.ends_with("0 jobs\n"), "{list}");
    let (ok, _, err) = run(&["jobs", "list", "--state", "stuck", "--config", config]);
    assert!(!ok);
    assert!(
        err.contains("unknown state `stuck`: one of owed, launching"),
        "{err}"
    );
    let (ok, runners, _) = run(&["runners", "list", "--config", config]);
    assert!(
        ok && runners.ends_with("0 runners\n"),
        "a dry run registers none: {runners}"
    );

    // The admin listener serves the same as JSON, behind the token; the rest stays open.
    let client = reqwest::Client::new();
    let get = |path: &str, token: Option<&str>| {
        let mut request = client.get(format!("{admin}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    for path in ["/jobs/4242", "/jobs", "/runners"] {
        for token in [None, Some("wrong")] {
            let answer = get(path, token).await.unwrap();
            assert_eq!(answer.status(), 401, "{path} {token:?}");
            assert_eq!(
                answer.headers()["www-authenticate"],
                "Bearer realm=\"dockhand admin\""
            );
        }
    }
    for path in ["/metrics", "/healthz", "/readyz"] {
        assert_eq!(get(path, None).await.unwrap().status(), 200, "{path}");
    }
    let token = Some("adm1n-t0ken");
    let answer = get("/jobs/4242", token).await.unwrap();
    assert_eq!(answer.status(), 200);
    let served: serde_json::Value = serde_json::from_str(&answer.text().await.unwrap()).unwrap();
    assert_eq!(served["headline"], story["headline"]);
    assert_eq!(served["history"], story["history"]);
    let listed = get("/jobs?state=dry_run&limit=5", token).await.unwrap();
    let listed: serde_json::Value = serde_json::from_str(&listed.text().await.unwrap()).unwrap();
    assert_eq!(listed[0]["job_id"], 4242);
    let answer = get("/jobs/999", token).await.unwrap();
    assert_eq!(answer.status(), 404);
    let bad = get("/jobs?state=stuck", token).await.unwrap();
    assert_eq!(bad.status(), 400);
    let bad = get("/jobs?colour=red", token).await.unwrap();
    assert_eq!(bad.status(), 400);
    let runners = get("/runners", token).await.unwrap().text().await.unwrap();
    let runners: serde_json::Value = serde_json::from_str(&runners).unwrap();
    assert_eq!(runners, serde_json::json!([]));

    let killed = Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(wait_with_timeout(&mut serve, Duration::from_secs(20)).success());
}

fn wait_with_timeout(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("dockhand did not exit within {limit:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// Multi-threaded: the binary runs blocking while the in-process ingress answers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_event_signs_what_a_running_ingress_accepts_and_fails_on_a_wrong_secret() {
    let app = spawn_embedded_app().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("good"), SECRET).unwrap();
    std::fs::write(dir.path().join("bad"), "not-the-secret").unwrap();
    let good = dir.path().join("good");
    let bad = dir.path().join("bad");

    let sent = dockhand(&[
        "send-event",
        "--url",
        &app.webhook_url,
        "--secret-file",
        good.to_str().unwrap(),
        "--action",
        "completed",
        "--labels",
        "self-hosted,linux",
        "--job-id",
        "55",
        "--repo",
        "acme/widgets",
    ])
    .output()
    .unwrap();
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stdout)
    );
    let messages = app.drain().await;
    assert_eq!(messages.len(), 1);
    let envelope = dockhand::queue::envelope::Envelope::decode(&messages[0].body).unwrap();
    assert_eq!(envelope.event.job.id.0, 55);
    assert_eq!(envelope.event.action.as_str(), "completed");
    assert_eq!(envelope.event.repository.full_name, "acme/widgets");
    assert_eq!(envelope.event.job.labels.0, ["self-hosted", "linux"]);

    let refused = dockhand(&[
        "send-event",
        "--url",
        &app.webhook_url,
        "--secret-file",
        bad.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stdout).contains("HTTP 401"));
    assert!(app.drain().await.is_empty());
    app.stop().await;
}

#[test]
fn config_check_prints_the_effective_config_with_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[webhook]\nsecrets = [{ value = \"hunter2-secret\" }]\n[[pool]]\nname = \"p\"\nlabels = [\"x\"]\n",
    )
    .unwrap();
    let out = dockhand(&[
        "config",
        "check",
        "--for",
        "ingress",
        "--config",
        path.to_str().unwrap(),
    ])
    .env("DOCKHAND_QUEUE__EMBEDDED__MAX_RECEIVES", "9")
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("<redacted>"), "{stdout}");
    assert!(!stdout.contains("hunter2"), "{stdout}");
    assert!(
        stdout.contains("max_receives = 9"),
        "the env layer applies: {stdout}"
    );
}

#[test]
fn config_check_names_the_bad_key_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[webhook]\nsecrets = [{ value = \"s\" }]\n[queue]\nkind = \"sqs\"\n[[pool]]\nname = \"p\"\nlabels = [\"x\"]\n",
    )
    .unwrap();
    let out = dockhand(&["config", "check", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("queue.sqs.url: required when queue.kind = \"sqs\""),
        "{stderr}"
    );
}

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["ingress", "--help"],
        vec!["config", "check", "--help"],
        vec!["send-event", "--help"],
        vec!["jobs", "show", "--help"],
        vec!["jobs", "list", "--help"],
        vec!["runners", "list", "--help"],
    ] {
        let out = dockhand(&args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(!out.stdout.is_empty(), "{args:?}");
    }
}
