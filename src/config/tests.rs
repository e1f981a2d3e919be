use std::io::Write;
use std::time::Duration;

use figment::providers::Env;

use super::*;

const MINIMAL: &str = r#"
[webhook]
secrets = [{ value = "s3cret-value" }]

[[pool]]
name = "linux"
labels = ["self-hosted", "linux"]
"#;

fn write_config(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file
}

fn load(text: &str) -> Result<Settings, ConfigError> {
    let file = write_config(text);
    Settings::load_with_env(Some(file.path()), Env::prefixed("DOCKHAND_UNIT_NEVER_SET_"))
}

fn problems(text: &str) -> String {
    load(text).unwrap_err().to_string()
}

#[test]
fn a_minimal_file_gets_the_defaults() {
    let s = load(MINIMAL).unwrap();
    assert_eq!(s.server.path, "/webhook");
    assert_eq!(s.queue.kind, QueueKind::Embedded);
    assert_eq!(s.webhook.max_body_bytes, 1024 * 1024);
    assert_eq!(s.pools[0].labels, ["self-hosted", "linux"]);
}

#[test]
fn the_reference_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_CONFIG_PATH);
    Settings::load_with_env(Some(&path), Env::prefixed("DOCKHAND_UNIT_NEVER_SET_")).unwrap();
    let dev = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/dev.toml");
    Settings::load_with_env(Some(&dev), Env::prefixed("DOCKHAND_UNIT_NEVER_SET_")).unwrap();
}

#[test]
#[expect(
    clippy::result_large_err,
    reason = "figment::Jail's closure returns figment::Result"
)]
fn environment_variables_override_the_file_with_double_underscore_nesting() {
    // The jail sets the variables for this test alone and removes them afterwards.
    figment::Jail::expect_with(|jail| {
        jail.set_env("DOCKHAND_UNIT_ENV_QUEUE__KIND", "sqs");
        jail.set_env(
            "DOCKHAND_UNIT_ENV_QUEUE__SQS__URL",
            "http://127.0.0.1:1/000000000000/q",
        );
        jail.set_env("DOCKHAND_UNIT_ENV_QUEUE__SQS__WAIT_TIME", "5s");
        jail.set_env("DOCKHAND_UNIT_ENV_WEBHOOK__ALLOWED_ORGS", "[acme, octo]");
        jail.set_env("DOCKHAND_UNIT_ENV_WEBHOOK__SECRETS", "[{value=from-env}]");
        jail.set_env("DOCKHAND_UNIT_ENV_TEST_SOMETHING_ELSE", "ignored");
        let file = write_config(MINIMAL);
        let s = Settings::load_with_env(Some(file.path()), Env::prefixed("DOCKHAND_UNIT_ENV_"))
            .unwrap();
        assert_eq!(s.queue.kind, QueueKind::Sqs);
        assert_eq!(s.queue.sqs.wait_time, Duration::from_secs(5));
        assert_eq!(s.webhook.allowed_orgs, ["acme", "octo"]);
        let secret = s.webhook.secrets[0].value.as_ref().unwrap();
        assert_eq!(secrecy::ExposeSecret::expose_secret(secret), "from-env");
        Ok(())
    });
}

#[test]
fn an_explicit_missing_file_is_an_error() {
    let err = Settings::load(Some(Path::new("/nonexistent/dockhand.toml"))).unwrap_err();
    assert!(matches!(err, ConfigError::Missing(_)), "{err}");
}

#[test]
fn unknown_keys_and_wrong_types_name_the_key() {
    let err = problems(&format!("{MINIMAL}\n[server]\nlisten = 12\n"));
    assert!(err.contains("server.listen"), "{err}");
    let err = problems(&format!("{MINIMAL}\n[queue]\nkidn = \"sqs\"\n"));
    assert!(err.contains("kidn"), "{err}");
}

#[test]
fn every_problem_is_reported_with_its_key() {
    let err = problems(
        r#"
[server]
path = "webhook"
[webhook]
secrets = [{ value = "a", file = "/b" }]
max_body_bytes = 10
allowed_repos = ["just-a-name"]
[queue]
kind = "sqs"
[queue.sqs]
wait_time = "30s"
[queue.batch]
linger = "1s"
[[pool]]
name = "Bad Name"
labels = []
[[pool]]
name = "Bad Name"
labels = ["x"]
"#,
    );
    for key in [
        "server.path",
        "webhook.secrets[0]",
        "webhook.max_body_bytes",
        "webhook.allowed_repos[0]",
        "queue.sqs.url",
        "queue.sqs.wait_time",
        "queue.batch.linger",
        "pool[0].name",
        "pool[0].labels",
        "pool[1].name",
    ] {
        assert!(
            err.contains(&format!("  {key}: ")),
            "missing {key} in:\n{err}"
        );
    }
}

#[test]
fn no_pool_is_refused_and_an_ingress_needs_a_secret() {
    let err = problems("");
    assert!(err.contains("  pool: "), "{err}");
    let no_secret = load("[[pool]]\nname = \"p\"\nlabels = [\"x\"]\n").unwrap();
    let err = no_secret.validate_for_ingress().unwrap_err().to_string();
    assert!(err.contains("  webhook.secrets: "), "{err}");
    let err = no_secret.validate_for_workers().unwrap_err().to_string();
    assert!(err.contains("  pool[0].ecs: "), "{err}");
    assert!(err.contains("  github.app_id: "), "{err}");
}

#[test]
fn the_redacted_rendering_hides_secrets_and_reloads() {
    let text = format!(
        "{MINIMAL}\n[aws.credentials]\naccess_key_id = \"AKIDEXAMPLE\"\nsecret_access_key = \"aws-secret-value\"\n"
    );
    let rendered = load(&text).unwrap().to_redacted_toml();
    assert!(!rendered.contains("s3cret-value"), "{rendered}");
    assert!(!rendered.contains("aws-secret-value"), "{rendered}");
    assert!(rendered.contains("<redacted>"), "{rendered}");
    // Apart from the secrets, what it prints is itself a loadable config.
    let reloaded = load(&rendered).unwrap();
    assert_eq!(reloaded.pools[0].name, "linux");
}

#[test]
fn debug_output_never_shows_a_secret() {
    let s = load(MINIMAL).unwrap();
    assert!(!format!("{s:?}").contains("s3cret-value"));
}

#[test]
fn connection_limits_have_defaults_in_seconds_and_are_checked_by_key() {
    let s = load(MINIMAL).unwrap();
    assert_eq!(s.server.header_timeout, Duration::from_secs(5));
    assert_eq!(s.server.body_timeout, Duration::from_secs(10));
    assert_eq!(s.server.max_connections, 1024);
    assert_eq!(s.admin.header_timeout, Duration::from_secs(5));
    assert_eq!(s.admin.max_connections, 128);
    let err = problems(&format!(
        "{MINIMAL}\n[server]\nheader_timeout = \"0s\"\nbody_timeout = \"10m\"\nmax_connections = 0\n\
         [admin]\nmax_connections = 0\n"
    ));
    for key in [
        "server.header_timeout",
        "server.body_timeout",
        "server.max_connections",
        "admin.max_connections",
    ] {
        assert!(
            err.contains(&format!("  {key}: ")),
            "missing {key} in:\n{err}"
        );
    }
    assert!(!err.contains("admin.header_timeout"), "{err}");
}

#[test]
fn a_visibility_timeout_or_lease_under_a_second_is_refused_by_key() {
    // The worker's heartbeat beats every third of the shorter of the two: a zero period
    // panics in tokio's interval.
    let sqs = "[queue]\nkind = \"sqs\"\n[queue.sqs]\nurl = \"http://127.0.0.1:1/000000000000/q\"\n";
    for value in ["0s", "500ms"] {
        let text = format!("{MINIMAL}\n{sqs}visibility_timeout = \"{value}\"\n");
        let err = match load(&text) {
            Ok(_) => panic!("queue.sqs.visibility_timeout = {value:?} was accepted"),
            Err(err) => err.to_string(),
        };
        assert!(
            err.contains("  queue.sqs.visibility_timeout: "),
            "{value}: {err}"
        );
    }
    let err = problems(&format!(
        "{MINIMAL}\n[queue.embedded]\nvisibility_timeout = \"0s\"\n[worker]\nlease = \"0s\"\n"
    ));
    for key in ["queue.embedded.visibility_timeout", "worker.lease"] {
        assert!(
            err.contains(&format!("  {key}: ")),
            "missing {key} in:\n{err}"
        );
    }
    let s = load(&format!("{MINIMAL}\n{sqs}visibility_timeout = \"1s\"\n")).unwrap();
    assert_eq!(s.queue.sqs.visibility_timeout, Duration::from_secs(1));
}

#[test]
fn a_store_retention_under_an_hour_is_refused_by_key() {
    let err = problems(&format!("{MINIMAL}\n[store]\nretention = \"59m\"\n"));
    assert!(err.contains("  store.retention: "), "{err}");
    let s = load(&format!("{MINIMAL}\n[store]\nretention = \"1h\"\n")).unwrap();
    assert_eq!(s.store.retention, Duration::from_secs(3600));
    assert_eq!(
        load(MINIMAL).unwrap().store.retention,
        Duration::from_secs(14 * 86400)
    );
}

#[test]
fn a_store_password_is_never_printed_or_debugged() {
    for url in [
        "postgres://dockhand:pg-pass-1@db.internal:5432/dockhand",
        "postgresql://dockhand@db.internal/dockhand?sslmode=require&password=pg-pass-1",
    ] {
        let text = format!("{MINIMAL}\n[store]\nurl = \"{url}\"\n");
        let settings = load(&text).unwrap();
        let rendered = settings.to_redacted_toml();
        assert!(!rendered.contains("pg-pass-1"), "{rendered}");
        assert!(!format!("{settings:?}").contains("pg-pass-1"));
        // Everything but the password is shown.
        assert!(rendered.contains("db.internal"), "{rendered}");
        assert!(rendered.contains("<redacted>"), "{rendered}");
    }
    let rendered = load(&format!(
        "{MINIMAL}\n[store]\nurl = \"postgres://dockhand:pg-pass-1@db:5432/dockhand?sslmode=require\"\n"
    ))
    .unwrap()
    .to_redacted_toml();
    assert!(
        rendered
            .contains("url = \"postgres://dockhand:<redacted>@db:5432/dockhand?sslmode=require\""),
        "{rendered}"
    );
}

#[test]
fn a_warm_pool_loads_and_a_target_above_max_runners_is_refused() {
    let warm = r#"
[webhook]
secrets = [{ value = "s3cret-value" }]

[[pool]]
name = "linux"
labels = ["self-hosted", "linux"]
max_runners = 4
min_idle = 1
warm_target = "acme"

[[pool.schedule]]
cron = "* 8-18 * * Mon-Fri"
timezone = "Europe/Berlin"
min_idle = 4
"#;
    let s = load(warm).unwrap();
    assert_eq!((s.pools[0].min_idle, s.pools[0].schedule.len()), (1, 1));
    assert_eq!(s.pools[0].max_idle_age, Duration::from_secs(3600));
    let err = problems(&warm.replace("min_idle = 4", "min_idle = 5"));
    assert!(
        err.contains("  pool[0].schedule[0].min_idle: 5 is more than the pool's max_runners (4)"),
        "{err}"
    );
    let err = problems(&warm.replace("min_idle = 1", "min_idle = 5"));
    assert!(
        err.contains("  pool[0].min_idle: 5 is more than max_runners (4)"),
        "{err}"
    );
    let err = problems(&warm.replace("warm_target = \"acme\"\n", ""));
    assert!(err.contains("  pool[0].warm_target: "), "{err}");
}

#[test]
fn several_github_apps_load_and_the_single_form_is_one_of_them() {
    let text = format!(
        "{MINIMAL}\n[[github.app]]\nid = 1\nprivate_key = {{ file = \"/a.pem\" }}\n\
         [[github.app]]\nid = 2\nprivate_key = {{ ssm = \"/dockhand/b\" }}\n\
         [github.limits]\npoints_per_minute = 450\nmax_wait = \"10s\"\n\
         [aws.run_task]\nper_second = 5.0\nburst = 10\n"
    );
    let s = load(&text).unwrap();
    let ids: Vec<u64> = s.github.app_list().iter().map(|a| a.id).collect();
    assert_eq!(ids, [1, 2]);
    assert_eq!(s.github.limits.points_per_minute, 450);
    assert_eq!(
        s.github.limits.concurrent, 100,
        "GitHub's documented default"
    );
    assert_eq!(s.github.limits.max_wait, Duration::from_secs(10));
    assert_eq!(s.aws.run_task.per_second, 5.0);
    assert_eq!(s.aws.run_task.burst, 10);
    // The Apps stand in for `github.app_id`: only the pool's ECS settings are missing.
    let err = s.validate_for_workers().unwrap_err().to_string();
    assert!(!err.contains("github"), "{err}");

    let single = load(&format!(
        "{MINIMAL}\n[github]\napp_id = 7\nprivate_key = {{ value = \"pem\" }}\n"
    ))
    .unwrap();
    let apps = single.github.app_list();
    assert_eq!(apps.len(), 1);
    assert_eq!(apps[0].id, 7);
    assert_eq!(
        single.aws.run_task.per_second, 20.0,
        "ECS's documented rate"
    );
}

#[test]
fn github_apps_and_limits_are_checked_by_key() {
    let both = format!(
        "{MINIMAL}\n[github]\napp_id = 7\n[[github.app]]\nid = 1\nprivate_key = {{ value = \"k\" }}\n\
         [[github.app]]\nid = 1\nprivate_key = {{ value = \"k\" }}\n\
         [github.limits]\npoints_per_minute = 4\nconcurrent = 0\n\
         [aws.run_task]\nper_second = 0.0\nburst = 0\n"
    );
    let err = problems(&both);
    for key in [
        "github.app:",
        "github.app[1].id:",
        "github.limits.points_per_minute:",
        "github.limits.points_burst:",
        "github.limits.concurrent:",
        "aws.run_task.per_second:",
        "aws.run_task.burst:",
    ] {
        assert!(
            err.contains(&format!("  {key} ")),
            "missing {key} in:\n{err}"
        );
    }
}
