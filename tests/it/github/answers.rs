//! How each of GitHub's answers is classified (rate limits, server errors, refused
//! credentials, no answer), installation lookups, what the client shows of itself, and the
//! request metrics.

use super::*;

#[tokio::test]
async fn an_exhausted_rate_limit_is_rate_limited_until_the_reset() {
    let (fake, app) = start().await;
    fake.fail_next(
        Endpoint::JitConfig,
        Failure::RateLimited {
            reset_in: Duration::from_secs(120),
        },
    );

    let err = app
        .generate_jit_config(
            INSTALLATION,
            &repo("acme", "w"),
            &jit_request("r", "Default"),
        )
        .await
        .unwrap_err();

    let wait = retry_after(&err);
    assert!(
        (Duration::from_secs(115)..=Duration::from_secs(121)).contains(&wait),
        "{wait:?}"
    );
    assert!(err.is_transient());
    assert_eq!(err.kind(), "rate_limited");
}

#[tokio::test]
async fn a_secondary_rate_limit_is_rate_limited_for_retry_after() {
    let (fake, app) = start().await;
    fake.fail_next(
        Endpoint::ListRunners,
        Failure::RetryAfter(Duration::from_secs(30)),
    );

    let err = app
        .find_runner(INSTALLATION, &org("acme"), "r")
        .await
        .unwrap_err();

    assert_eq!(retry_after(&err), Duration::from_secs(30));
    assert!(err.is_transient());
}

#[tokio::test]
async fn a_rate_limited_token_mint_is_rate_limited_and_the_app_waits_it_out() {
    let (fake, app) = start().await;
    fake.fail_next(
        Endpoint::InstallationToken,
        Failure::RetryAfter(Duration::from_secs(45)),
    );

    let err = app
        .find_runner(INSTALLATION, &org("acme"), "r")
        .await
        .unwrap_err();

    assert_eq!(retry_after(&err), Duration::from_secs(45));
    assert_eq!(fake.count(Endpoint::ListRunners), 0);
    // The next call does not go to GitHub before the 45 s are over, longer than calls wait
    // for budget (`max_wait`, 30 s): it is rate-limited at once, for what is left.
    let err = app
        .find_runner(INSTALLATION, &org("acme"), "r")
        .await
        .unwrap_err();
    let left = retry_after(&err);
    assert!(
        left > Duration::from_secs(40) && left <= Duration::from_secs(45),
        "{left:?}"
    );
    assert_eq!(fake.count(Endpoint::InstallationToken), 1);
    assert_eq!(fake.count(Endpoint::ListRunners), 0);
}

#[tokio::test]
async fn a_short_retry_after_is_waited_out_and_the_call_goes_through() {
    let (fake, app) = start().await;
    fake.fail_next(
        Endpoint::ListRunners,
        Failure::RetryAfter(Duration::from_secs(1)),
    );
    app.find_runner(INSTALLATION, &org("acme"), "r")
        .await
        .unwrap_err();

    let started = std::time::Instant::now();
    app.find_runner(INSTALLATION, &org("acme"), "r")
        .await
        .unwrap();

    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(fake.count(Endpoint::ListRunners), 2);
}

#[tokio::test]
async fn a_500_is_a_transient_server_error() {
    let (fake, app) = start().await;
    fake.fail_next(Endpoint::JitConfig, Failure::Status(500));

    let err = app
        .generate_jit_config(
            INSTALLATION,
            &repo("acme", "w"),
            &jit_request("r", "Default"),
        )
        .await
        .unwrap_err();

    assert!(
        matches!(err, GitHubError::Server { status: 500 }),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert!(fake.runners().is_empty());
}

#[tokio::test]
async fn a_403_without_a_rate_limit_is_forbidden() {
    let (fake, app) = start().await;
    fake.fail_next(Endpoint::JitConfig, Failure::Status(403));

    let err = app
        .generate_jit_config(
            INSTALLATION,
            &repo("acme", "w"),
            &jit_request("r", "Default"),
        )
        .await
        .unwrap_err();

    assert!(matches!(err, GitHubError::Forbidden), "{err:?}");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn a_key_github_does_not_know_is_unauthorized() {
    let fake = FakeGitHub::start(APP_ID).await;
    let mut settings = fake.settings();
    settings.private_key = Some(SecretSource {
        file: Some(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/github-app-other-key.pem"),
        ),
        ..SecretSource::default()
    });
    let app = app_for(&settings).await.unwrap();

    let err = app
        .generate_jit_config(INSTALLATION, &org("acme"), &jit_request("r", "Default"))
        .await
        .unwrap_err();

    assert!(matches!(err, GitHubError::Unauthorized), "{err:?}");
    assert!(!err.is_transient());
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].auth, Auth::None);
}

#[tokio::test]
async fn another_apps_id_is_unauthorized() {
    let fake = FakeGitHub::start(APP_ID).await;
    let mut settings = fake.settings();
    settings.app_id = Some(APP_ID + 1);
    let app = app_for(&settings).await.unwrap();

    let err = app.installation_for(&org("acme")).await.unwrap_err();

    assert!(matches!(err, GitHubError::Unauthorized), "{err:?}");
    assert_eq!(
        fake.requests()[0].auth,
        Auth::AppJwt {
            iss: (APP_ID + 1).to_string()
        }
    );
}

#[tokio::test]
async fn no_answer_is_a_transient_transport_error() {
    let fake = FakeGitHub::start(APP_ID).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut settings = fake.settings();
    settings.api_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let app = app_for(&settings).await.unwrap();

    let err = app
        .find_runner(INSTALLATION, &org("acme"), "r")
        .await
        .unwrap_err();

    assert!(matches!(err, GitHubError::Transport(_)), "{err:?}");
    assert!(err.is_transient());
    assert_eq!(err.kind(), "transport");
}

#[tokio::test]
async fn installation_for_asks_with_the_app_jwt_once_per_target() {
    let (fake, app) = start().await;

    let first = app.installation_for(&org("acme")).await.unwrap();
    let again = app.installation_for(&org("acme")).await.unwrap();
    let via_repo = app
        .installation_for(&repo("acme", "widgets"))
        .await
        .unwrap();

    assert_eq!(first, again);
    assert_eq!(
        first, via_repo,
        "a repository is served by its owner's installation"
    );
    assert_eq!(
        fake.requests_to(Endpoint::Installation),
        [
            recorded("GET", "/orgs/acme/installation", None, app_jwt()),
            recorded("GET", "/repos/acme/widgets/installation", None, app_jwt()),
        ]
    );

    // The installation found is one whose token reaches the org.
    app.generate_jit_config(first, &org("acme"), &jit_request("r", "Default"))
        .await
        .unwrap();
    assert_eq!(fake.runners().len(), 1);
}

#[tokio::test]
async fn installation_for_an_account_without_the_app_is_not_found() {
    let (fake, app) = start().await;
    fake.fail_next(Endpoint::Installation, Failure::Status(404));

    let err = app.installation_for(&org("nobody")).await.unwrap_err();

    assert!(matches!(err, GitHubError::NotFound), "{err:?}");
    // Failures are not cached.
    app.installation_for(&org("nobody")).await.unwrap();
    assert_eq!(fake.count(Endpoint::Installation), 2);
}

#[tokio::test]
async fn debug_output_shows_no_key_token_or_jit_config() {
    let (fake, app) = start().await;
    let config = app
        .generate_jit_config(INSTALLATION, &org("acme"), &jit_request("r", "Default"))
        .await
        .unwrap();
    let encoded = fake.runners()[0].encoded_jit_config.clone();
    let pem = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/github-app-test-key.pem"),
    )
    .unwrap();
    let key_line = pem.lines().nth(1).unwrap();

    let app_debug = format!("{app:?}");
    let config_debug = format!("{config:?}");

    assert!(app_debug.contains("4242"), "{app_debug}");
    for secret in ["ghs_", key_line, "PRIVATE", &encoded] {
        assert!(!app_debug.contains(secret), "{app_debug}");
        assert!(!config_debug.contains(secret), "{config_debug}");
    }
    assert!(config_debug.contains(&config.runner_id.0.to_string()));
}

#[tokio::test]
async fn from_settings_names_the_setting_that_is_missing_or_invalid() {
    let fake = FakeGitHub::start(APP_ID).await;

    let mut settings = fake.settings();
    settings.app_id = None;
    let err = app_for(&settings).await.unwrap_err();
    assert!(format!("{err:#}").contains("github.app_id"), "{err:#}");

    let mut settings = fake.settings();
    settings.private_key = None;
    let err = app_for(&settings).await.unwrap_err();
    assert!(format!("{err:#}").contains("github.private_key"), "{err:#}");

    let mut settings = fake.settings();
    settings.private_key = Some(SecretSource {
        value: Some(Secret::from(
            "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----",
        )),
        ..SecretSource::default()
    });
    let err = app_for(&settings).await.unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("github.private_key"), "{text}");
    assert!(!text.contains("bm90IGEga2V5"), "{text}");

    let mut settings = fake.settings();
    settings.private_key = Some(SecretSource {
        file: Some("/nonexistent/key.pem".into()),
        ..SecretSource::default()
    });
    let err = app_for(&settings).await.unwrap_err();
    assert!(format!("{err:#}").contains("github.private_key"), "{err:#}");
    assert!(fake.requests().is_empty());
}

/// The value of the sample whose line carries all of `labels`.
fn sample(rendered: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    rendered
        .lines()
        .filter(|l| l.starts_with(metric) && labels.iter().all(|label| l.contains(label)))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn calls_are_counted_by_endpoint_and_status_and_the_quota_is_a_gauge() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    // The test's runtime has one thread, so a local recorder sees every call.
    let _guard = metrics::set_default_local_recorder(&recorder);
    let (fake, app) = start().await;

    for i in 0..2 {
        app.generate_jit_config(
            INSTALLATION,
            &org("acme"),
            &jit_request(&format!("r-{i}"), "Default"),
        )
        .await
        .unwrap();
    }
    fake.fail_next(Endpoint::DeleteRunner, Failure::Status(502));
    app.delete_runner(INSTALLATION, &org("acme"), RunnerId(1))
        .await
        .unwrap_err();
    app.installation_for(&org("acme")).await.unwrap();

    let rendered = handle.render();
    let requests = "dockhand_github_requests_total";
    let count = |endpoint: &str, status: &str| {
        sample(
            &rendered,
            requests,
            &[
                &format!("endpoint=\"{endpoint}\""),
                &format!("status=\"{status}\""),
            ],
        )
    };
    assert_eq!(count("installation_token", "201"), Some(1.0), "{rendered}");
    assert_eq!(count("runner_groups", "200"), Some(1.0), "{rendered}");
    assert_eq!(count("jitconfig", "201"), Some(2.0), "{rendered}");
    assert_eq!(count("delete_runner", "502"), Some(1.0), "{rendered}");
    assert_eq!(count("installation", "200"), Some(1.0), "{rendered}");
    // The fake counts down from 5000 per credential: the installation made 4 calls
    // (groups, 2 JITs, delete), the App 2 (mint, installation lookup).
    let quota = "dockhand_github_rate_limit_remaining";
    assert_eq!(
        sample(&rendered, quota, &["installation=\"99\""]),
        Some(4996.0),
        "{rendered}"
    );
    assert_eq!(
        sample(&rendered, quota, &["installation=\"app\""]),
        Some(4998.0),
        "{rendered}"
    );
}

#[tokio::test]
async fn a_failed_connection_is_counted_as_an_error() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let settings = GitHubSettings {
        api_url: format!("http://{}", closed.local_addr().unwrap()),
        ..FakeGitHub::start(APP_ID).await.settings()
    };
    drop(closed);
    let app = app_for(&settings).await.unwrap();

    app.installation_for(&org("acme")).await.unwrap_err();

    let rendered = handle.render();
    assert_eq!(
        sample(
            &rendered,
            "dockhand_github_requests_total",
            &["endpoint=\"installation\"", "status=\"error\""]
        ),
        Some(1.0),
        "{rendered}"
    );
}

#[tokio::test]
async fn a_github_that_never_answers_times_out_as_a_transport_error() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let settings = GitHubSettings {
        api_url: format!("http://{}", silent.local_addr().unwrap()),
        request_timeout: Duration::from_millis(300),
        ..FakeGitHub::start(APP_ID).await.settings()
    };
    // Accept connections and hold them open without a word.
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let app = app_for(&settings).await.unwrap();

    let started = std::time::Instant::now();
    let err = app.installation_for(&org("acme")).await.unwrap_err();

    assert!(matches!(err, GitHubError::Transport(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    holder.abort();
}

#[tokio::test]
async fn dockhand_asks_for_githubs_json_on_every_call() {
    let (fake, app) = start().await;
    app.find_runner(InstallationId(5), &org("acme"), "r-1")
        .await
        .unwrap();
    // The token mint (App JWT) and the listing (installation token) both got through the
    // fake's Accept check.
    assert_eq!(fake.count(Endpoint::InstallationToken), 1);
    assert_eq!(fake.count(Endpoint::ListRunners), 1);
}
