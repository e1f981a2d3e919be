//! The GitHub App client against the fake GitHub: exact requests (path, body, auth), token
//! and runner-group caching; runner registrations (`runners`); how each failure is
//! classified, and the metrics (`answers`).

mod answers;
mod runners;

use crate::common;

use std::time::Duration;

use common::fake_github::{Auth, Endpoint, Failure, FakeGitHub, Recorded};
use dockhand::config::{AwsSettings, GitHubSettings, Secret, SecretResolver, SecretSource};
use dockhand::domain::{InstallationId, RunnerId};
use dockhand::github::{GitHubApp, GitHubError, JitRequest, RunnerTarget};
use secrecy::ExposeSecret;
use serde_json::json;

pub(crate) const APP_ID: u64 = 4242;
pub(crate) const INSTALLATION: InstallationId = InstallationId(99);

pub(crate) async fn app_for(settings: &GitHubSettings) -> anyhow::Result<GitHubApp> {
    let aws = AwsSettings::default();
    GitHubApp::from_settings(settings, &SecretResolver::new(&aws)).await
}

pub(crate) async fn start() -> (FakeGitHub, GitHubApp) {
    let fake = FakeGitHub::start(APP_ID).await;
    let app = app_for(&fake.settings())
        .await
        .expect("building the App client");
    (fake, app)
}

pub(crate) fn org(name: &str) -> RunnerTarget {
    RunnerTarget::Org(name.to_string())
}

pub(crate) fn repo(owner: &str, repo: &str) -> RunnerTarget {
    RunnerTarget::Repo {
        owner: owner.to_string(),
        repo: repo.to_string(),
    }
}

pub(crate) fn jit_request(name: &str, group: &str) -> JitRequest {
    JitRequest {
        name: name.to_string(),
        runner_group: group.to_string(),
        labels: vec!["self-hosted".into(), "linux".into(), "x64".into()],
        work_folder: "_work".to_string(),
    }
}

pub(crate) fn app_jwt() -> Auth {
    Auth::AppJwt {
        iss: APP_ID.to_string(),
    }
}

pub(crate) fn token(installation: InstallationId) -> Auth {
    Auth::InstallationToken {
        installation: installation.0,
    }
}

pub(crate) fn recorded(method: &str, path: &str, query: Option<&str>, auth: Auth) -> Recorded {
    let app = (auth != Auth::None).then_some(APP_ID);
    Recorded {
        method: method.to_string(),
        path: path.to_string(),
        query: query.map(str::to_string),
        body: None,
        auth,
        app,
    }
}

fn retry_after(err: &GitHubError) -> Duration {
    match err {
        GitHubError::RateLimited { retry_after } => *retry_after,
        other => panic!("expected RateLimited, got {other:?}"),
    }
}

#[tokio::test]
async fn an_org_jit_config_mints_a_token_resolves_the_group_and_posts_the_exact_body() {
    let (fake, app) = start().await;

    let config = app
        .generate_jit_config(
            INSTALLATION,
            &org("acme"),
            &jit_request("dockhand-1", "Default"),
        )
        .await
        .unwrap();

    let mut mint = recorded(
        "POST",
        "/app/installations/99/access_tokens",
        None,
        app_jwt(),
    );
    mint.body = Some(json!({}));
    let groups = recorded(
        "GET",
        "/orgs/acme/actions/runner-groups",
        Some("per_page=100&page=1"),
        token(INSTALLATION),
    );
    let mut jit = recorded(
        "POST",
        "/orgs/acme/actions/runners/generate-jitconfig",
        None,
        token(INSTALLATION),
    );
    jit.body = Some(json!({
        "name": "dockhand-1",
        "runner_group_id": 1,
        "labels": ["self-hosted", "linux", "x64"],
        "work_folder": "_work",
    }));
    assert_eq!(fake.requests(), vec![mint, groups, jit]);

    let runners = fake.runners();
    assert_eq!(runners.len(), 1);
    assert_eq!(runners[0].target, org("acme"));
    assert_eq!(runners[0].name, "dockhand-1");
    assert_eq!(runners[0].runner_group_id, 1);
    assert_eq!(config.runner_id, RunnerId(runners[0].id));
    assert_eq!(
        config.encoded.expose_secret(),
        runners[0].encoded_jit_config
    );
}

#[tokio::test]
async fn a_repo_jit_config_joins_the_default_group_without_a_lookup() {
    let (fake, app) = start().await;

    let config = app
        .generate_jit_config(
            INSTALLATION,
            &repo("acme", "widgets"),
            &jit_request("dockhand-2", "ignored-for-repos"),
        )
        .await
        .unwrap();

    let requests = fake.requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    assert_eq!(requests[0].path, "/app/installations/99/access_tokens");
    assert_eq!(requests[0].auth, app_jwt());
    assert_eq!(requests[1].method, "POST");
    assert_eq!(
        requests[1].path,
        "/repos/acme/widgets/actions/runners/generate-jitconfig"
    );
    assert_eq!(requests[1].auth, token(INSTALLATION));
    assert_eq!(
        requests[1].body,
        Some(json!({
            "name": "dockhand-2",
            "runner_group_id": 1,
            "labels": ["self-hosted", "linux", "x64"],
            "work_folder": "_work",
        }))
    );
    assert_eq!(fake.count(Endpoint::RunnerGroups), 0);
    let runners = fake.runners();
    assert_eq!(runners[0].target, repo("acme", "widgets"));
    assert_eq!(config.runner_id, RunnerId(runners[0].id));
}

#[tokio::test]
async fn installation_tokens_are_minted_once_per_installation() {
    let (fake, app) = start().await;

    for i in 0..5 {
        app.generate_jit_config(
            INSTALLATION,
            &org("acme"),
            &jit_request(&format!("r-{i}"), "Default"),
        )
        .await
        .unwrap();
    }
    assert_eq!(fake.count(Endpoint::InstallationToken), 1);
    assert_eq!(fake.count(Endpoint::JitConfig), 5);

    let other = InstallationId(100);
    app.generate_jit_config(other, &org("globex"), &jit_request("r-0", "Default"))
        .await
        .unwrap();
    let mints = fake.requests_to(Endpoint::InstallationToken);
    assert_eq!(mints.len(), 2);
    assert_eq!(mints[1].path, "/app/installations/100/access_tokens");
    assert!(
        fake.requests_to(Endpoint::JitConfig)
            .iter()
            .all(|r| r.auth != Auth::None)
    );
}

#[tokio::test]
async fn clones_share_one_token_cache() {
    let (fake, app) = start().await;
    let clone = app.clone();

    app.find_runner(INSTALLATION, &org("acme"), "x")
        .await
        .unwrap();
    clone
        .find_runner(INSTALLATION, &org("acme"), "x")
        .await
        .unwrap();

    assert_eq!(fake.count(Endpoint::InstallationToken), 1);
}

#[tokio::test]
async fn a_token_close_to_expiry_is_replaced_before_it_is_used() {
    let (fake, app) = start().await;
    // Shorter than the client's refresh margin: every call needs a new token.
    fake.set_token_lifetime(Duration::from_secs(4 * 60));
    app.find_runner(INSTALLATION, &org("acme"), "x")
        .await
        .unwrap();
    app.find_runner(INSTALLATION, &org("acme"), "x")
        .await
        .unwrap();
    assert_eq!(fake.count(Endpoint::InstallationToken), 2);

    fake.set_token_lifetime(Duration::from_secs(3600));
    for _ in 0..3 {
        app.find_runner(INSTALLATION, &org("acme"), "x")
            .await
            .unwrap();
    }
    assert_eq!(fake.count(Endpoint::InstallationToken), 3);
}

#[tokio::test]
async fn a_refused_cached_token_is_replaced_and_the_call_made_once_more() {
    let (fake, app) = start().await;
    app.generate_jit_config(
        INSTALLATION,
        &repo("acme", "w"),
        &jit_request("r-1", "Default"),
    )
    .await
    .unwrap();
    fake.fail_next(Endpoint::JitConfig, Failure::Status(401));

    app.generate_jit_config(
        INSTALLATION,
        &repo("acme", "w"),
        &jit_request("r-2", "Default"),
    )
    .await
    .unwrap();

    assert_eq!(fake.count(Endpoint::InstallationToken), 2);
    assert_eq!(fake.count(Endpoint::JitConfig), 3);
    assert_eq!(fake.runners().len(), 2);
}

#[tokio::test]
async fn a_refused_fresh_token_is_unauthorized_without_a_retry_loop() {
    let (fake, app) = start().await;
    fake.fail_next(Endpoint::JitConfig, Failure::Status(401));

    let err = app
        .generate_jit_config(
            INSTALLATION,
            &repo("acme", "w"),
            &jit_request("r-1", "Default"),
        )
        .await
        .unwrap_err();

    assert!(matches!(err, GitHubError::Unauthorized), "{err:?}");
    assert_eq!(fake.count(Endpoint::InstallationToken), 1);
    assert_eq!(fake.count(Endpoint::JitConfig), 1);
}

#[tokio::test]
async fn the_runner_group_id_is_looked_up_once_and_cached() {
    let (fake, app) = start().await;
    fake.add_runner_group("acme", "gpu", 7);

    for i in 0..3 {
        app.generate_jit_config(
            INSTALLATION,
            &org("acme"),
            &jit_request(&format!("r-{i}"), "gpu"),
        )
        .await
        .unwrap();
    }

    assert_eq!(fake.count(Endpoint::RunnerGroups), 1);
    let bodies: Vec<_> = fake
        .requests_to(Endpoint::JitConfig)
        .into_iter()
        .map(|r| r.body.unwrap()["runner_group_id"].clone())
        .collect();
    assert_eq!(bodies, [json!(7), json!(7), json!(7)]);
    assert!(fake.runners().iter().all(|r| r.runner_group_id == 7));
}

#[tokio::test]
async fn a_runner_group_on_the_second_page_is_found() {
    let (fake, app) = start().await;
    for id in 2..=150 {
        fake.add_runner_group("acme", &format!("group-{id}"), id);
    }

    app.generate_jit_config(INSTALLATION, &org("acme"), &jit_request("r", "group-140"))
        .await
        .unwrap();

    let queries: Vec<_> = fake
        .requests_to(Endpoint::RunnerGroups)
        .into_iter()
        .map(|r| r.query.unwrap())
        .collect();
    assert_eq!(queries, ["per_page=100&page=1", "per_page=100&page=2"]);
    assert_eq!(fake.runners()[0].runner_group_id, 140);
}

#[tokio::test]
async fn an_unknown_runner_group_is_a_permanent_not_found_and_registers_nothing() {
    let (fake, app) = start().await;
    fake.add_runner_group("acme", "gpu", 7);

    let err = app
        .generate_jit_config(INSTALLATION, &org("acme"), &jit_request("r", "arm64"))
        .await
        .unwrap_err();

    assert!(matches!(err, GitHubError::NotFound), "{err:?}");
    assert!(!err.is_transient());
    assert_eq!(fake.count(Endpoint::JitConfig), 0);
    assert!(fake.runners().is_empty());
}

#[tokio::test]
async fn a_taken_runner_name_is_a_conflict() {
    let (fake, app) = start().await;
    fake.register_runner(&org("acme"), "dockhand-7", false);

    let err = app
        .generate_jit_config(
            INSTALLATION,
            &org("acme"),
            &jit_request("dockhand-7", "Default"),
        )
        .await
        .unwrap_err();

    assert!(matches!(err, GitHubError::Conflict), "{err:?}");
    assert!(!err.is_transient());
    assert_eq!(err.kind(), "conflict");
    assert_eq!(fake.runners().len(), 1);
}
