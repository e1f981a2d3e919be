//! Several GitHub Apps as one client: the choice of App for a registration by the budget
//! each has left, and every other call made by the App its installation belongs to, also
//! after a restart.

use crate::common;

use common::fake_github::{Endpoint, FakeGitHub};
use dockhand::domain::InstallationId;
use dockhand::github::GitHubApp;

use crate::github::{app_for, jit_request, org};

const APP_A: u64 = 4242;
const APP_B: u64 = 4343;
/// The first installation the fake numbers for each App.
const INSTALLATION_A: u64 = 7001;
const INSTALLATION_B: u64 = 8001;

async fn start_two() -> (FakeGitHub, GitHubApp) {
    let fake = FakeGitHub::start_apps(&[APP_A, APP_B]).await;
    let mut settings = fake.settings();
    // Points back to full within a millisecond: the choice turns on the hourly limit.
    settings.limits.points_per_minute = 6_000_000;
    let app = app_for(&settings).await.expect("building the App clients");
    (fake, app)
}

fn jit_apps(fake: &FakeGitHub) -> Vec<u64> {
    fake.requests_to(Endpoint::JitConfig)
        .iter()
        .map(|r| r.app.unwrap())
        .collect()
}

#[tokio::test]
async fn the_app_with_more_of_its_hourly_limit_left_registers_next() {
    let (fake, app) = start_two().await;
    let target = org("acme");
    let hint = InstallationId(99);
    // Both Apps answer once; then App A's installation has far less left.
    for name in ["r1", "r2"] {
        app.generate_jit_config(hint, &target, &jit_request(name, "Default"))
            .await
            .unwrap();
    }
    fake.set_rate_remaining(INSTALLATION_A, 1_000);
    app.generate_jit_config(hint, &target, &jit_request("r3", "Default"))
        .await
        .unwrap();
    for name in ["r4", "r5", "r6"] {
        let jit = app
            .generate_jit_config(hint, &target, &jit_request(name, "Default"))
            .await
            .unwrap();
        assert_eq!(jit.app_id, APP_B, "{name}");
        assert_eq!(jit.installation, InstallationId(INSTALLATION_B));
    }

    assert_eq!(jit_apps(&fake), [APP_A, APP_B, APP_A, APP_B, APP_B, APP_B]);
    let runners = fake.runners();
    assert_eq!(runners.len(), 6);
    assert_eq!(runners.iter().filter(|r| r.app == APP_A).count(), 2);
}

#[tokio::test]
async fn after_a_restart_clean_up_goes_to_the_app_that_owns_the_installation() {
    let (fake, app) = start_two().await;
    let target = org("acme");
    app.generate_jit_config(InstallationId(99), &target, &jit_request("r1", "Default"))
        .await
        .unwrap();
    let jit = app
        .generate_jit_config(InstallationId(99), &target, &jit_request("r2", "Default"))
        .await
        .unwrap();
    assert_eq!((jit.app_id, jit.installation.0), (APP_B, INSTALLATION_B));

    // A new process knows nothing of which App the recorded installation belongs to.
    let restarted = app_for(&fake.settings())
        .await
        .expect("building the clients");
    restarted
        .delete_runner(jit.installation, &target, jit.runner_id)
        .await
        .unwrap();
    restarted
        .delete_runner(jit.installation, &target, jit.runner_id)
        .await
        .unwrap();

    let deletes = fake.requests_to(Endpoint::DeleteRunner);
    assert_eq!(deletes.len(), 2);
    assert!(deletes.iter().all(|d| d.app == Some(APP_B)), "{deletes:?}");
    // Asked once of each App (A said no), then remembered.
    let asked: Vec<_> = fake
        .requests_to(Endpoint::Installation)
        .into_iter()
        .filter(|r| r.path == format!("/app/installations/{INSTALLATION_B}"))
        .map(|r| r.app.unwrap())
        .collect();
    assert_eq!(asked, [APP_A, APP_B]);
    assert_eq!(fake.runners().len(), 1, "r1 stays");
}
