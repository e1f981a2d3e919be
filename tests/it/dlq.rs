//! `dockhand dlq list` and `dockhand requeue`, run as the binary against moto's SQS and the
//! embedded queue: what they show, what they move, and what they refuse.

use crate::common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use common::process::BIN;
use common::*;
use dockhand::config::{QueueKind, Settings};
use dockhand::domain::DeliveryId;
use dockhand::ingress::webhook::{Parsed, parse_workflow_job};
use dockhand::queue::envelope::Envelope;
use dockhand::queue::{OutgoingMessage, Queue, ReceivedMessage};
use dockhand::worker::outcome::Settled;
use rstest::rstest;
use serde_json::Value;

#[derive(Debug, Clone, Copy)]
enum Backend {
    Embedded,
    Sqs,
}

/// A main queue and its dead-letter queue (redrive after one receive), and a config file
/// for the binary that points at them.
struct Stage {
    settings: Settings,
    main: Arc<dyn Queue>,
    dlq: Arc<dyn Queue>,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

impl Stage {
    async fn new(backend: Backend) -> Self {
        Self::with_sqs_endpoint(backend, None).await
    }

    /// The binary talks to SQS through `endpoint` instead of moto itself.
    async fn with_sqs_endpoint(backend: Backend, endpoint: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = match backend {
            Backend::Embedded => embedded_settings(&dir),
            Backend::Sqs => {
                let (url, _) = create_sqs_queue(1).await;
                let mut s = base_settings();
                s.aws = moto_aws();
                s.queue.kind = QueueKind::Sqs;
                s.queue.sqs.url = Some(url);
                s
            }
        };
        settings.queue.embedded.max_receives = 1;
        settings.queue.embedded.visibility_timeout = Duration::from_secs(1);
        let main = dockhand::queue::connect(&settings.queue, &settings.aws)
            .await
            .unwrap();
        let dlq = main.dead_letter_queue().await.unwrap().unwrap();
        let text = match backend {
            Backend::Embedded => format!(
                "[queue]\nkind = \"embedded\"\n[queue.embedded]\npath = \"{}\"\nmax_receives = 1\n{POOL}",
                settings.queue.embedded.path.display()
            ),
            Backend::Sqs => sqs_config(
                settings.queue.sqs.url.as_deref().unwrap(),
                None,
                &endpoint.map_or_else(moto_url, str::to_string),
            ),
        };
        let config = dir.path().join("dockhand.toml");
        std::fs::write(&config, text).unwrap();
        Self {
            settings,
            main,
            dlq,
            config,
            _dir: dir,
        }
    }

    async fn run(&self, args: &[&str]) -> Run {
        run_binary(&self.config, args).await
    }

    /// Puts the seeded messages straight on the dead-letter queue, and returns them as sent
    /// (building a seed's message again would stamp other times into its payload).
    async fn seed(&self, jobs: &[Seed]) -> Vec<OutgoingMessage> {
        let mut sent = Vec::new();
        for job in jobs {
            let message = job.message();
            self.dlq.send(message.clone()).await.unwrap();
            sent.push(message);
        }
        sent
    }
}

/// The one pool every tool config names (the tools need a valid config, pools included).
const POOL: &str = "[[pool]]\nname = \"linux-x64\"\nlabels = [\"self-hosted\", \"linux\"]\n";

/// A tool config for an SQS main queue on moto (through `endpoint`), with an explicit
/// dead-letter queue or the one its RedrivePolicy names.
fn sqs_config(url: &str, dead_letter_url: Option<&str>, endpoint: &str) -> String {
    let dead_letter =
        dead_letter_url.map_or_else(String::new, |u| format!("dead_letter_url = \"{u}\"\n"));
    format!(
        "[queue]\nkind = \"sqs\"\n[queue.sqs]\nurl = \"{url}\"\n{dead_letter}\
         [aws]\nregion = \"us-east-1\"\nendpoint_url = \"{endpoint}\"\n\
         [aws.credentials]\naccess_key_id = \"testing\"\nsecret_access_key = \"testing\"\n{POOL}"
    )
}

/// Runs the binary with this config, stdin not a terminal.
async fn run_binary(config: &std::path::Path, args: &[&str]) -> Run {
    let mut command = Command::new(BIN);
    command
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("DOCKHAND_CONFIG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("running dockhand");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "JSON on stdout ({e}): {}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }

    fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "stdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        self
    }
}

/// A dead-lettered job, as a worker would have left it.
#[derive(Clone, Copy)]
struct Seed {
    job: u64,
    repo: &'static str,
    action: &'static str,
    /// How long ago the ingress accepted it.
    age: Duration,
    requeues: u32,
}

const REASON: &str = "GitHub: unauthorized (check the App's private key)";

impl Seed {
    fn message(&self) -> OutgoingMessage {
        let body = dockhand::synthetic::workflow_job_payload(&dockhand::synthetic::SyntheticJob {
            action: self.action.into(),
            job_id: self.job,
            repo: self.repo.into(),
            installation_id: Some(99),
            ..Default::default()
        })
        .to_string();
        let Parsed::Job(event) =
            parse_workflow_job(body.as_bytes(), DeliveryId("d".into()), 64).unwrap()
        else {
            unreachable!("a known action")
        };
        let received = Utc::now() - chrono::Duration::from_std(self.age).unwrap();
        let mut message = Envelope::new(*event, Some("linux-x64".into()), received).to_message();
        message
            .attributes
            .insert("dead-letter-reason".into(), REASON.into());
        message
            .attributes
            .insert("dead-letter-receives".into(), "1".into());
        if self.requeues > 0 {
            message
                .attributes
                .insert("requeue-count".into(), self.requeues.to_string());
        }
        message
    }
}

const MINUTE: Duration = Duration::from_secs(60);

/// Five dead-lettered jobs; the last was already requeued three times (the default limit).
const SEEDS: [Seed; 5] = [
    Seed {
        job: 1,
        repo: "octo/a",
        action: "queued",
        age: Duration::from_secs(3 * 3600),
        requeues: 0,
    },
    Seed {
        job: 2,
        repo: "octo/b",
        action: "queued",
        age: Duration::from_secs(10 * 60),
        requeues: 0,
    },
    Seed {
        job: 3,
        repo: "octo/a",
        action: "completed",
        age: Duration::from_secs(10 * 60),
        requeues: 0,
    },
    Seed {
        job: 4,
        repo: "octo/c",
        action: "in_progress",
        age: Duration::from_secs(2 * 86400),
        requeues: 1,
    },
    Seed {
        job: 5,
        repo: "octo/b",
        action: "queued",
        age: MINUTE,
        requeues: 3,
    },
];

/// Every message on a queue (hidden afterwards), by job id.
async fn job_ids(queue: &dyn Queue) -> BTreeSet<u64> {
    messages(queue)
        .await
        .iter()
        .map(|m| m.attributes["job-id"].parse().unwrap())
        .collect()
}

async fn messages(queue: &dyn Queue) -> Vec<ReceivedMessage> {
    common::drain(queue).await
}

fn ids(list: &[u64]) -> BTreeSet<u64> {
    list.iter().copied().collect()
}

// ---------------------------------------------------------------------------------------
// dlq list

/// A dry-run worker on the stage's queue, with a SQLite store.
async fn dry_run_worker(stage: &Stage, dir: &tempfile::TempDir) -> dockhand::worker::Worker {
    let mut settings = stage.settings.clone();
    settings.worker.dry_run = true;
    settings.store = common::stores::sqlite_settings(dir);
    settings.pools[0].ecs = Some(dry_run_launch_settings());
    dockhand::startup::build_worker(&settings, stage.main.clone())
        .await
        .unwrap()
}

#[rstest]
#[case::embedded(Backend::Embedded)]
#[case::sqs(Backend::Sqs)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_paths_dead_letters_are_listed_with_their_reasons(#[case] backend: Backend) {
    let stage = Stage::new(backend).await;
    let store_dir = tempfile::tempdir().unwrap();
    let worker = dry_run_worker(&stage, &store_dir).await;

    // Job 7 is received by a worker that dies holding it: its next receive is past the
    // maximum, so the queue itself dead-letters it.
    let seven = Seed {
        job: 7,
        repo: "octo-org/hello-world",
        action: "queued",
        age: MINUTE,
        requeues: 0,
    };
    let mut message = seven.message();
    message
        .attributes
        .retain(|k, _| !k.starts_with("dead-letter"));
    stage.main.send(message).await.unwrap();
    let taken = stage
        .main
        .receive_with_visibility(10, Duration::ZERO, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    // Two poison messages, which the worker dead-letters at once.
    let future_version = serde_json::json!({"v": 2, "event": {}}).to_string();
    for (job, body) in [(5, "not json at all".to_string()), (6, future_version)] {
        stage
            .main
            .send(OutgoingMessage {
                body,
                attributes: [("job-id".to_string(), job.to_string())].into(),
                delay: std::time::Duration::ZERO,
            })
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let settled = drain_workers(&[&worker]).await;
    assert!(
        matches!(&settled[..], [Settled::Failed(_), Settled::Failed(_)]),
        "{settled:?}"
    );

    let run = stage.run(&["dlq", "list", "--output", "json"]).await;
    run.assert_code(0);
    let listed = run.json();
    let mut listed: Vec<&Value> = listed.as_array().unwrap().iter().collect();
    listed.sort_by_key(|m| m["job_id"].as_u64());
    assert_eq!(listed.len(), 3, "{listed:#?}");
    let (poison, future, seven) = (listed[0], listed[1], listed[2]);
    assert_eq!(poison["job_id"], 5);
    assert_eq!(poison["reason"], "message body is not a dockhand envelope");
    assert_eq!(poison["receives"], 1);
    assert_eq!(poison["repo"], Value::Null);
    assert_eq!(future["job_id"], 6);
    assert_eq!(
        future["reason"],
        "unsupported envelope version 2 (this build reads 1)"
    );
    assert_eq!(seven["job_id"], 7);
    assert_eq!(seven["repo"], "octo-org/hello-world");
    assert_eq!(seven["action"], "queued");
    assert_eq!(seven["pool"], "linux-x64");
    assert_eq!(seven["receives"], 1);
    assert_eq!(seven["requeues"], 0);
    let age = seven["age_seconds"].as_u64().unwrap();
    assert!((60..120).contains(&age), "{age}");
    match backend {
        Backend::Embedded => assert_eq!(seven["reason"], "exceeded max receives (1)"),
        Backend::Sqs => assert_eq!(seven["reason"], dockhand::dlq::REDRIVE_REASON),
    }

    // Listing consumed nothing: a second look, as a table, sees the same three at once.
    let run = stage.run(&["dlq", "list"]).await;
    run.assert_code(0);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", run.stdout);
    assert!(lines[0].starts_with("JOB  "), "{}", lines[0]);
    assert!(lines[0].ends_with("AGE  REASON"), "{}", lines[0]);
    assert!(
        run.stdout
            .contains("message body is not a dockhand envelope")
    );
    assert!(
        run.stderr.contains("3 dead-lettered messages"),
        "{}",
        run.stderr
    );
    let run = stage
        .run(&["dlq", "list", "--max", "2", "--output", "json"])
        .await;
    assert_eq!(run.assert_code(0).json().as_array().unwrap().len(), 2);
    assert_eq!(job_ids(&*stage.dlq).await, ids(&[5, 6, 7]));
    assert!(job_ids(&*stage.main).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_dead_letter_queue_is_said_to_be_empty() {
    let stage = Stage::new(Backend::Embedded).await;
    let run = stage.run(&["dlq", "list"]).await;
    run.assert_code(0);
    assert_eq!(run.stdout, "");
    assert!(run.stderr.contains("is empty"), "{}", run.stderr);
}

// ---------------------------------------------------------------------------------------
// requeue

struct Case {
    args: &'static [&'static str],
    moved: &'static [u64],
    skipped_by_filter: u64,
    skipped_by_limit: u64,
}

const CASES: [Case; 9] = [
    Case {
        args: &["--job-id", "2"],
        moved: &[2],
        skipped_by_filter: 4,
        skipped_by_limit: 0,
    },
    Case {
        args: &["--job-id", "1,3"],
        moved: &[1, 3],
        skipped_by_filter: 3,
        skipped_by_limit: 0,
    },
    Case {
        args: &["--repo", "OCTO/A"],
        moved: &[1, 3],
        skipped_by_filter: 3,
        skipped_by_limit: 0,
    },
    Case {
        args: &["--action", "completed", "--action", "in_progress"],
        moved: &[3, 4],
        skipped_by_filter: 3,
        skipped_by_limit: 0,
    },
    Case {
        args: &["--older-than", "1h"],
        moved: &[1, 4],
        skipped_by_filter: 3,
        skipped_by_limit: 0,
    },
    Case {
        args: &["--newer-than", "30m"],
        moved: &[2, 3],
        skipped_by_filter: 2,
        skipped_by_limit: 1,
    },
    Case {
        args: &["--repo", "octo/b", "--newer-than", "30m", "--force"],
        moved: &[2, 5],
        skipped_by_filter: 3,
        skipped_by_limit: 0,
    },
    Case {
        args: &["--all"],
        moved: &[1, 2, 3, 4],
        skipped_by_filter: 0,
        skipped_by_limit: 1,
    },
    Case {
        args: &["--all", "--max-requeues", "1"],
        moved: &[1, 2, 3],
        skipped_by_filter: 0,
        skipped_by_limit: 2,
    },
];

#[rstest]
#[case::embedded(Backend::Embedded)]
#[case::sqs(Backend::Sqs)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_filter_requeues_exactly_the_messages_it_chooses(#[case] backend: Backend) {
    let mut runs = tokio::task::JoinSet::new();
    for (i, case) in CASES.iter().enumerate() {
        runs.spawn(async move {
            let stage = Stage::new(backend).await;
            stage.seed(&SEEDS).await;
            let mut args = vec!["requeue", "--yes", "--output", "json"];
            args.extend(case.args);
            let run = stage.run(&args).await;
            run.assert_code(0);
            let summary = &run.json()["summary"];
            let context = format!("case {i} {:?}: {summary}", case.args);
            assert_eq!(summary["moved"], case.moved.len(), "{context}");
            assert_eq!(
                summary["skipped_by_filter"], case.skipped_by_filter,
                "{context}"
            );
            assert_eq!(
                summary["skipped_by_limit"], case.skipped_by_limit,
                "{context}"
            );
            assert_eq!(summary["failed"], 0, "{context}");
            assert_eq!(job_ids(&*stage.main).await, ids(case.moved), "{context}");
            let left: BTreeSet<u64> = SEEDS
                .iter()
                .map(|s| s.job)
                .filter(|j| !case.moved.contains(j))
                .collect();
            assert_eq!(job_ids(&*stage.dlq).await, left, "{context}");
        });
    }
    runs.join_all().await;
}

#[rstest]
#[case::embedded(Backend::Embedded)]
#[case::sqs(Backend::Sqs)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requeued_message_keeps_its_body_and_attributes_and_counts_the_requeue(
    #[case] backend: Backend,
) {
    let stage = Stage::new(backend).await;
    let seeded = stage.seed(&SEEDS[3..4]).await.remove(0);
    stage
        .run(&["requeue", "--job-id", "4", "--yes"])
        .await
        .assert_code(0);
    let moved = messages(&*stage.main).await;
    assert_eq!(moved.len(), 1);
    // The envelope's received_at is the seed's, to the millisecond the queue keeps.
    let body: Value = serde_json::from_str(&moved[0].body).unwrap();
    let sent: Value = serde_json::from_str(&seeded.body).unwrap();
    assert_eq!(body["event"], sent["event"]);
    assert_eq!(body["pool"], "linux-x64");
    let attributes = &moved[0].attributes;
    for kept in ["job-id", "action", "envelope-version"] {
        assert_eq!(attributes[kept], seeded.attributes[kept], "{kept}");
    }
    assert_eq!(attributes["requeue-count"], "2");
    assert_eq!(attributes["previous-dead-letter-reason"], REASON);
    assert!(!attributes.contains_key("dead-letter-reason"));
    assert!(!attributes.contains_key("dead-letter-receives"));
    assert!(job_ids(&*stage.dlq).await.is_empty());
}

#[rstest]
#[case::embedded(Backend::Embedded)]
#[case::sqs(Backend::Sqs)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_moves_nothing(#[case] backend: Backend) {
    let stage = Stage::new(backend).await;
    stage.seed(&SEEDS).await;
    let run = stage
        .run(&["requeue", "--all", "--dry-run", "--output", "json"])
        .await;
    run.assert_code(0);
    let json = run.json();
    assert_eq!(json["dry_run"], true);
    let would: BTreeSet<u64> = json["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["outcome"] == "would_move")
        .map(|m| m["job_id"].as_u64().unwrap())
        .collect();
    assert_eq!(would, ids(&[1, 2, 3, 4]));
    assert_eq!(json["summary"]["moved"], 0);
    assert_eq!(json["summary"]["skipped_by_limit"], 1);
    // Nothing moved, and everything is visible again at once.
    assert!(job_ids(&*stage.main).await.is_empty());
    assert_eq!(job_ids(&*stage.dlq).await, ids(&[1, 2, 3, 4, 5]));

    // The table form says the same to a person.
    let stage = Stage::new(backend).await;
    stage.seed(&SEEDS).await;
    let run = stage
        .run(&["requeue", "--repo", "octo/a", "--dry-run"])
        .await;
    run.assert_code(0);
    assert_eq!(run.stdout.lines().count(), 3, "{}", run.stdout);
    assert!(
        run.stderr
            .contains("would move 2, skipped by filter 3, skipped by limit 0, failed 0"),
        "{}",
        run.stderr
    );
    assert_eq!(job_ids(&*stage.dlq).await.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requeue_refuses_without_a_filter_or_without_confirmation_and_touches_nothing() {
    let stage = Stage::new(Backend::Sqs).await;
    stage.seed(&SEEDS[..2]).await;

    let run = stage.run(&["requeue"]).await;
    run.assert_code(2);
    assert!(run.stderr.contains("without a filter"), "{}", run.stderr);
    assert!(run.stderr.contains("--all"), "{}", run.stderr);

    // stdin is not a terminal, so there is nobody to ask.
    let run = stage.run(&["requeue", "--all"]).await;
    run.assert_code(2);
    assert!(
        run.stderr.contains("without confirmation"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("--yes"), "{}", run.stderr);

    // --all with a filter is a contradiction clap refuses.
    let run = stage
        .run(&["requeue", "--all", "--repo", "octo/a", "--yes"])
        .await;
    run.assert_code(2);
    assert!(run.stderr.contains("cannot be used with"), "{}", run.stderr);

    assert!(job_ids(&*stage.main).await.is_empty());
    assert_eq!(job_ids(&*stage.dlq).await, ids(&[1, 2]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_redrive_policy_the_configured_dead_letter_url_is_used_and_without_either_it_says_so()
 {
    let client = moto_aws().sqs_client().await;
    let mut urls = Vec::new();
    for suffix in ["", "-dlq"] {
        let name = format!("dockhand-plain-{}{suffix}", uuid::Uuid::new_v4().simple());
        let url = client.create_queue().queue_name(name).send().await.unwrap();
        urls.push(url.queue_url.unwrap());
    }
    let dir = tempfile::tempdir().unwrap();
    let config = |dead_letter_url: Option<&str>| {
        let path = dir.path().join("dockhand.toml");
        std::fs::write(&path, sqs_config(&urls[0], dead_letter_url, &moto_url())).unwrap();
        path
    };
    let run_without = run_binary(&config(None), &["dlq", "list"]).await;
    run_without.assert_code(1);
    assert!(
        run_without.stderr.contains("has no dead-letter queue"),
        "{}",
        run_without.stderr
    );

    let dlq = dockhand::queue::sqs::SqsQueue::new(
        client.clone(),
        &dockhand::config::SqsSettings {
            url: Some(urls[1].clone()),
            ..Default::default()
        },
    );
    let dlq: &dyn Queue = &dlq;
    dlq.send(SEEDS[0].message()).await.unwrap();
    let with = config(Some(&urls[1]));
    let listed = run_binary(&with, &["dlq", "list", "--output", "json"]).await;
    assert_eq!(listed.assert_code(0).json()[0]["job_id"], 1);
    run_binary(&with, &["requeue", "--all", "--yes"])
        .await
        .assert_code(0);
    let main = dockhand::queue::sqs::SqsQueue::new(
        client,
        &dockhand::config::SqsSettings {
            url: Some(urls[0].clone()),
            ..Default::default()
        },
    );
    assert_eq!(job_ids(&main).await, ids(&[1]));
    assert!(job_ids(dlq).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_spaces_the_moves() {
    let stage = Stage::new(Backend::Embedded).await;
    stage.seed(&SEEDS).await;
    let started = std::time::Instant::now();
    let run = stage
        .run(&["requeue", "--all", "--force", "--yes", "--rate", "4"])
        .await;
    run.assert_code(0);
    // The first goes at once, then one every 250ms: at least a second for five. (A lower
    // bound only: a slow machine makes it longer, never shorter.)
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(job_ids(&*stage.main).await.len(), 5);
    // Without a terminal, a line per message instead of a progress bar.
    assert_eq!(
        run.stderr
            .lines()
            .filter(|l| l.starts_with("moved job "))
            .count(),
        5,
        "{}",
        run.stderr
    );
    let run = stage
        .run(&["requeue", "--all", "--yes", "--rate", "0"])
        .await;
    run.assert_code(2);
    assert!(
        run.stderr.contains("not a positive number"),
        "{}",
        run.stderr
    );
}

/// Runs `dockhand requeue` on a terminal (util-linux `script` gives it one) and answers
/// its question with `answer`.
async fn requeue_on_a_terminal(stage: &Stage, args: &str, answer: &str) -> Run {
    use std::io::Write;
    let command_line = format!("{BIN} --config {} requeue {args}", stage.config.display());
    let answer = format!("{answer}\n");
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new("script")
            .args([
                "--quiet",
                "--return",
                "--command",
                &command_line,
                "/dev/null",
            ])
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("util-linux `script` (Debian's bsdutils) runs the command on a terminal");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(answer.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_terminal_requeue_asks_first_and_moves_only_on_yes() {
    let stage = Stage::new(Backend::Embedded).await;
    stage.seed(&SEEDS[..2]).await;

    let run = requeue_on_a_terminal(&stage, "--all", "n").await;
    run.assert_code(1);
    assert!(run.stdout.contains("Move 2 messages to"), "{}", run.stdout);
    assert!(run.stdout.contains("nothing moved"), "{}", run.stdout);
    assert!(job_ids(&*stage.main).await.is_empty());
    // Declining released them at once.
    assert_eq!(job_ids(&*stage.dlq).await, ids(&[1, 2]));

    let stage = Stage::new(Backend::Embedded).await;
    stage.seed(&SEEDS[..2]).await;
    let run = requeue_on_a_terminal(&stage, "--all", "y").await;
    run.assert_code(0);
    assert!(
        run.stdout
            .contains("moved 2, skipped by filter 0, skipped by limit 0, failed 0"),
        "{}",
        run.stdout
    );
    assert_eq!(job_ids(&*stage.main).await, ids(&[1, 2]));
    assert!(job_ids(&*stage.dlq).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_sqs_dies_mid_way_the_unsent_messages_stay_in_the_dead_letter_queue() {
    let proxy = dying_sqs::DyingSqs::start(2).await;
    let stage = Stage::with_sqs_endpoint(Backend::Sqs, Some(&proxy.url)).await;
    stage.seed(&SEEDS).await;

    let run = stage
        .run(&["requeue", "--all", "--force", "--yes", "--output", "json"])
        .await;
    run.assert_code(1);
    let json = run.json();
    assert_eq!(json["summary"]["moved"], 2, "{json:#}");
    assert_eq!(json["summary"]["failed"], 3, "{json:#}");
    let failed: Vec<&Value> = json["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["outcome"] == "failed")
        .collect();
    assert_eq!(failed.len(), 3);
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("send failed"),
        "{json:#}"
    );

    // Two moved; the other three are still in the DLQ (hidden until the hold ends, since
    // releasing them needed the dead endpoint too). Nothing is lost or doubled.
    assert_eq!(job_ids(&*stage.main).await.len(), 2);
    let client = moto_aws().sqs_client().await;
    let counts = client
        .get_queue_attributes()
        .queue_url(stage.dlq.location())
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(
            aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        )
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    let total: u64 = counts.values().map(|v| v.parse::<u64>().unwrap()).sum();
    assert_eq!(total, 3, "{counts:?}");
}
