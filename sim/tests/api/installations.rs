//! The App's installation on an org or a repository: found with the App's JWT only (as
//! dockhand looks up where warm runners and orphans live), 404 where the App is not
//! installed.

use reqwest::Method;

use super::{github, installation_token, jwt, world};

#[tokio::test]
async fn the_apps_installation_on_an_org_or_repo_is_found_with_the_apps_jwt_only() {
    let world = world().await;
    let app = jwt("github-app-test-key.pem", 31337);
    for path in [
        "/orgs/sim-org/installation",
        "/orgs/SIM-ORG/installation",
        "/repos/sim-org/repo-3/installation",
    ] {
        let (status, body) = github(&world, Method::GET, path, Some(&app), None).await;
        assert_eq!((status, body["id"].as_u64()), (200, Some(4242)), "{path}");
        assert_eq!(body["app_id"], 31337, "{path}");
    }
    let elsewhere = "/orgs/no-app-org/installation";
    assert_eq!(
        github(&world, Method::GET, elsewhere, Some(&app), None)
            .await
            .0,
        404
    );
    let token = installation_token(&world).await;
    let path = "/orgs/sim-org/installation";
    assert_eq!(
        github(&world, Method::GET, path, Some(&token), None)
            .await
            .0,
        401
    );
    assert_eq!(github(&world, Method::GET, path, None, None).await.0, 401);
}
