//! The GitHub client when GitHub changes under it or behaves unlike github.com: the App
//! reinstalled under a new installation id, a slow answer on a connection that sat idle in
//! the pool, and an Enterprise Server that ignores the runner list's `?name=` filter.

use std::time::Duration;

use crate::fake_github_checks::{mint, raw};
use crate::github::{
    APP_ID, INSTALLATION, app_for, app_jwt, jit_request, org, recorded, repo, start, token,
};
use common::fake_github::{Auth, Endpoint, FakeGitHub, Recorded};
use dockhand::config::GitHubSettings;
use dockhand::domain::{InstallationId, RunnerId};
use dockhand::github::GitHubError;
use dockhand::telemetry::chain;
use rstest::rstest;
use serde_json::json;

use crate::common;

fn minted(installation: InstallationId) -> Recorded {
    let mut mint = recorded(
        "POST",
        &format!("/app/installations/{installation}/access_tokens"),
        None,
        app_jwt(),
    );
    mint.body = Some(json!({}));
    mint
}

#[tokio::test]
async fn after_a_reinstall_a_404_on_minting_looks_the_installation_up_again_and_retries_once() {
    let (fake, app) = start().await;
    let target = repo("acme", "widgets");
    let old = app.installation_for(&target).await.unwrap();
    let new = InstallationId(fake.reinstall("acme"));
    assert_ne!(old, new);

    let config = app
        .generate_jit_config(old, &target, &jit_request("dh-after-reinstall", "Default"))
        .await
        .expect("the runner is registered through the new installation");

    let lookup = recorded("GET", "/repos/acme/widgets/installation", None, app_jwt());
    let mut jit = recorded(
        "POST",
        "/repos/acme/widgets/actions/runners/generate-jitconfig",
        None,
        token(new),
    );
    jit.body = Some(json!({
        "name": "dh-after-reinstall",
        "runner_group_id": 1,
        "labels": ["self-hosted", "linux", "x64"],
        "work_folder": "_work",
    }));
    assert_eq!(
        fake.requests(),
        [lookup.clone(), minted(old), lookup, minted(new), jit]
    );
    let runners = fake.runners();
    assert_eq!(runners.len(), 1);
    assert_eq!(config.runner_id, RunnerId(runners[0].id));

    // The new installation is cached, and its token too.
    assert_eq!(app.installation_for(&target).await.unwrap(), new);
    app.find_runner(new, &target, "dh-after-reinstall")
        .await
        .unwrap()
        .expect("found");
    assert_eq!(fake.count(Endpoint::Installation), 2);
    assert_eq!(fake.count(Endpoint::InstallationToken), 2);
}

#[tokio::test]
async fn after_the_app_is_uninstalled_a_404_on_minting_is_not_found_after_one_lookup() {
    let (fake, app) = start().await;
    let target = org("acme");
    let old = app.installation_for(&target).await.unwrap();
    fake.uninstall("acme");

    let err = app
        .find_runner(old, &target, "dh-anything")
        .await
        .expect_err("the App is gone from the account");

    assert!(matches!(err, GitHubError::NotFound), "{err:?}");
    let lookup = recorded("GET", "/orgs/acme/installation", None, app_jwt());
    assert_eq!(
        fake.requests(),
        [lookup.clone(), minted(old), lookup],
        "one failed mint, one lookup, no loop"
    );
}

#[tokio::test]
async fn deleting_a_runner_after_an_uninstall_is_not_found_rather_than_already_gone() {
    let (fake, app) = start().await;
    let target = org("acme");
    let installation = app.installation_for(&target).await.unwrap();
    let runner = fake.register_runner(&target, "dh-left-behind", false);
    fake.uninstall("acme");

    let err = app
        .delete_runner(installation, &target, RunnerId(runner))
        .await
        .expect_err("the registration is still there");

    assert!(matches!(err, GitHubError::NotFound), "{err:?}");
    assert_eq!(fake.runners().len(), 1);
    assert_eq!(fake.count(Endpoint::DeleteRunner), 0);
}

#[tokio::test]
async fn a_slow_answer_on_a_connection_idle_in_the_pool_succeeds_within_the_request_timeout() {
    let fake = FakeGitHub::start(APP_ID).await;
    let limit = Duration::from_secs(2);
    let settings = GitHubSettings {
        request_timeout: limit,
        ..fake.settings()
    };
    let app = app_for(&settings).await.unwrap();
    app.installation_for(&org("acme")).await.unwrap();

    // The pooled connection idles, then carries a call GitHub answers slowly: together
    // longer than the limit, each well within it. (A connection idle for longer than the
    // limit is not the case: the old read timeout closed it, and the call went on a new
    // one.)
    tokio::time::sleep(limit.mul_f64(0.6)).await;
    fake.set_delay(Endpoint::Installation, limit.mul_f64(0.6));
    let started = std::time::Instant::now();
    let answer = app.installation_for(&org("globex")).await;

    let elapsed = started.elapsed();
    assert!(
        answer.is_ok(),
        "{} after {elapsed:?}",
        answer.map_err(|e| chain(&e)).unwrap_err()
    );
    assert!(elapsed >= limit.mul_f64(0.6), "{elapsed:?}");
    assert_eq!(fake.count(Endpoint::Installation), 2);
}

/// The runner list's queries: the first asks by name, later ones page through the list.
fn list_queries(name: &str, pages: usize) -> Vec<String> {
    (1..=pages)
        .map(|page| match page {
            1 => format!("name={name}&per_page=100"),
            n => format!("name={name}&per_page=100&page={n}"),
        })
        .collect()
}

#[rstest]
#[case::github_honours_the_filter_and_has_the_runner(false, true, 1)]
#[case::github_honours_the_filter_and_has_no_such_runner(false, false, 1)]
#[case::ghes_ignores_the_filter_and_the_runner_is_on_page_two(true, true, 2)]
#[case::ghes_ignores_the_filter_and_has_no_such_runner(true, false, 2)]
#[tokio::test]
async fn find_runner_matches_the_exact_name_paging_only_when_the_name_filter_is_ignored(
    #[case] ignores_filter: bool,
    #[case] registered: bool,
    #[case] pages: usize,
) {
    let (fake, app) = start().await;
    if ignores_filter {
        fake.ignore_runner_name_filter();
    }
    let target = org("acme");
    let sought = "dh-linux-7-1";
    let mut id = None;
    for i in 0..150 {
        if i == 120 && registered {
            id = Some(fake.register_runner(&target, sought, false));
        }
        // Names the sought one is a prefix or a suffix of do not match.
        fake.register_runner(&target, &format!("{sought}{i}"), false);
    }

    let found = app
        .find_runner(INSTALLATION, &target, sought)
        .await
        .unwrap();

    assert_eq!(found.map(|r| r.id), id.map(RunnerId));
    let queries: Vec<_> = fake
        .requests_to(Endpoint::ListRunners)
        .into_iter()
        .map(|r| {
            assert_eq!(r.path, "/orgs/acme/actions/runners");
            assert_eq!(r.auth, token(INSTALLATION));
            r.query.unwrap_or_default()
        })
        .collect();
    assert_eq!(queries, list_queries(sought, pages));
}

#[tokio::test]
async fn the_fake_revokes_a_reinstalled_installation_like_github() {
    let fake = FakeGitHub::start(APP_ID).await;
    let old_token = mint(&fake, 99).await;
    let (status, _) = raw(
        &fake,
        reqwest::Method::GET,
        "/orgs/acme/actions/runners",
        Some(&old_token),
        None,
    )
    .await;
    assert_eq!(status, 200, "installation 99 is now acme's");

    let new = fake.reinstall("acme");

    assert_ne!(new, 99);
    let runners = |bearer: String| {
        let fake = &fake;
        async move {
            raw(
                fake,
                reqwest::Method::GET,
                "/orgs/acme/actions/runners",
                Some(&bearer),
                None,
            )
            .await
            .0
        }
    };
    assert_eq!(runners(old_token).await, 401, "the old token is revoked");
    let jwt = crate::fake_github_checks::jwt(crate::fake_github_checks::TEST_KEY, APP_ID, -60, 540);
    let (status, _) = raw(
        &fake,
        reqwest::Method::POST,
        "/app/installations/99/access_tokens",
        Some(&jwt),
        None,
    )
    .await;
    assert_eq!(status, 404, "the old installation is gone");
    let (status, body) = raw(
        &fake,
        reqwest::Method::GET,
        "/orgs/acme/installation",
        Some(&jwt),
        None,
    )
    .await;
    assert_eq!((status, body["id"].as_u64()), (200, Some(new)));
    assert_eq!(runners(mint(&fake, new).await).await, 200);
    assert_eq!(
        fake.requests_to(Endpoint::ListRunners)
            .iter()
            .map(|r| r.auth.clone())
            .collect::<Vec<_>>(),
        [
            Auth::InstallationToken { installation: 99 },
            Auth::None,
            Auth::InstallationToken { installation: new },
        ]
    );
}

#[tokio::test]
async fn the_fake_ignores_the_name_filter_only_when_told_and_pages_like_github() {
    let fake = FakeGitHub::start(APP_ID).await;
    let target = org("acme");
    for i in 0..3 {
        fake.register_runner(&target, &format!("r{i}"), false);
    }
    let token = mint(&fake, 99).await;
    let list = |query: &'static str| {
        let (fake, token) = (&fake, token.clone());
        async move {
            let (status, body) = raw(
                fake,
                reqwest::Method::GET,
                &format!("/orgs/acme/actions/runners?{query}"),
                Some(&token),
                None,
            )
            .await;
            assert_eq!(status, 200, "{body}");
            let names: Vec<String> = body["runners"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["name"].as_str().unwrap().to_string())
                .collect();
            (body["total_count"].as_u64().unwrap(), names)
        }
    };

    assert_eq!(list("name=r1").await, (1, vec!["r1".to_string()]));
    fake.ignore_runner_name_filter();
    assert_eq!(
        list("name=r1&per_page=2").await,
        (3, vec!["r0".to_string(), "r1".to_string()])
    );
    assert_eq!(
        list("name=r1&per_page=2&page=2").await,
        (3, vec!["r2".to_string()])
    );
}
