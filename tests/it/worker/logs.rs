//! What the logs and the job history never hold, whatever the log filter asks for: the JIT
//! config (in RunTask's request and answer), the App's private key, installation tokens,
//! the webhook secret and webhook bodies.

use super::*;
use tracing_subscriber::EnvFilter;

/// The test below, by its path in this binary.
const LOGS_TEST: &str =
    "worker::logs::logs_never_hold_the_jit_config_the_private_key_tokens_or_the_webhook_secret";

/// Collects every log line of this test process.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Fails if `secret` is in `logs` as text, or as the list of byte values that `{:?}`
/// prints for a `&[u8]` (how aws_sigv4 shows a request body it is told to show).
fn assert_not_logged(logs: &str, what: &str, secret: &str) {
    let bytes = format!("{:?}", secret.as_bytes());
    for form in [secret, bytes.trim_matches(['[', ']'])] {
        if let Some(at) = logs.find(form) {
            let line = logs[..at].rsplit('\n').next().unwrap_or_default();
            panic!(
                "{what} was logged, in a line starting: {}",
                &line[..line.floor_char_boundary(300)]
            );
        }
    }
}

/// Fails if `text` (logs, or the job history) holds the JIT config, a line of the App's
/// private key, the webhook secret, an installation token or a field of a webhook body.
fn assert_holds_no_secret(text: &str, jit: &str) {
    assert_not_logged(text, "the JIT config", jit);
    let key = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/github-app-test-key.pem"
    ))
    .unwrap();
    for line in key.lines().filter(|l| !l.starts_with("-----")) {
        assert_not_logged(text, "the private key", line);
    }
    assert_not_logged(text, "the webhook secret", SECRET);
    assert_not_logged(text, "an installation token", "ghs_");
    for body_field in ["hooks_url", "\"steps\"", "check_run_url"] {
        assert!(
            !text.contains(body_field),
            "a webhook body field is in it ({body_field})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_never_hold_the_jit_config_the_private_key_tokens_or_the_webhook_secret() {
    // dockhand's own subscriber, asked for everything every crate has to say.
    let captured = Captured::default();
    let writer = captured.clone();
    dockhand::telemetry::install(EnvFilter::new("trace"), true, false, move || writer.clone())
        .expect("this test installs the only subscriber in its process");

    let env = Env::new(QueueChoice::Embedded, Backend::Sqlite).await;
    env.github
        .fail_next(Endpoint::JitConfig, Failure::Status(500));
    let worker = env.worker().await;
    env.app.deliver(Delivery::signed(queued_job(4040))).await;
    let bad = {
        let mut d = Delivery::signed(queued_job(4041));
        d.signature = Some(sign("wrong", &d.body));
        d
    };
    env.app.deliver(bad).await;
    assert_retried_once_then_launched(&drain(&[&worker]).await);

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("dh-linux-x64-4040-1"),
        "the capture sees the launch"
    );
    let jit = env.github.runners()[0].encoded_jit_config.clone();
    assert_holds_no_secret(&logs, &jit);

    // Nor does the job history: every row in the table, and the story `jobs show` tells.
    let db = sqlx::AnyPool::connect(&env._store.settings.url)
        .await
        .unwrap();
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT kind, process, detail FROM job_history")
            .fetch_all(&db)
            .await
            .unwrap();
    let mut history = format!("{rows:?}");
    let story =
        dockhand::inspect::JobStory::load(worker.store(), "test", JobId(4040), chrono::Utc::now())
            .await
            .unwrap()
            .unwrap();
    history.push_str(&serde_json::to_string(&story).unwrap());
    history.push_str(&dockhand::inspect::render::story(
        &story,
        chrono::Utc::now(),
    ));
    assert!(
        history.contains("dh-linux-x64-4040-1") && rows.len() >= 6,
        "the history holds the retried launch: {history}"
    );
    assert_holds_no_secret(&history, &jit);
}

/// The AWS SDK redacts request bodies in its trace events unless `LOG_SIGNABLE_BODY=true`,
/// which an operator may set while chasing a signing problem; then aws_sigv4 logs RunTask's
/// body, JIT config and all. The test above, run again in a child process with it set.
#[test]
fn logs_never_hold_the_jit_config_even_when_the_sdk_is_told_to_print_request_bodies() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([LOGS_TEST, "--exact", "--nocapture"])
        .env("LOG_SIGNABLE_BODY", "true")
        .output()
        .expect("running this test binary again");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{printed}");
    assert!(printed.contains("1 passed"), "the test ran: {printed}");
}
