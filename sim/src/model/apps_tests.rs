//! Several GitHub Apps on one org: a webhook per App, each with its own installation, and
//! tokens bound to their App's installation.

use serde_json::Value;

use super::tests::actions;
use super::*;
use crate::clock::Clock;
use crate::settings::{AppSettings, Settings};

fn model(apps: usize) -> Model {
    let settings = Settings {
        apps: (0..apps).map(|n| AppSettings::nth(n, Vec::new())).collect(),
        ..Settings::default()
    };
    Model::new(settings, Clock::start(1.0))
}

fn installation(hook: &Webhook) -> u64 {
    let body: Value = serde_json::from_str(&hook.body).unwrap();
    assert_eq!(body["installation"]["id"], hook.installation);
    hook.installation
}

#[test]
fn github_sends_each_app_its_own_delivery_of_every_event_with_its_installation() {
    let mut m = model(2);
    let job = m.queue_job(false);
    let hooks = m.tick();
    assert_eq!(actions(&hooks), [(job, "queued"), (job, "queued")]);
    let installations: Vec<u64> = hooks.iter().map(installation).collect();
    assert_eq!(installations, [4242, 4243]);
    // The same job in both, apart from the installation.
    let job_of =
        |h: &Webhook| serde_json::from_str::<Value>(&h.body).unwrap()["workflow_job"].clone();
    assert_eq!(job_of(&hooks[0]), job_of(&hooks[1]));

    let mut one = model(1);
    one.queue_job(false);
    let hooks = one.tick();
    assert_eq!(hooks.iter().map(installation).collect::<Vec<_>>(), [4242]);
}

#[test]
fn an_installation_token_is_bound_to_its_apps_installation() {
    let mut m = model(4);
    assert_eq!(m.installation_of("sim-org", 31_338), Some(4243));
    assert_eq!(m.installation_of("SIM-ORG", 31_340), Some(4245));
    assert_eq!(m.installation_of("elsewhere", 31_338), None);
    assert_eq!(m.installation_of("sim-org", 1), None);
    assert!(m.mint(31_338, 4242).is_none(), "another App's installation");
    assert!(m.mint(31_338, 9_999).is_none(), "no such installation");
    let (token, _) = m.mint(31_338, 4243).unwrap();
    assert_eq!(m.token_installation(&token), Some(4243));
    assert_eq!(m.app_of(4243), Some(31_338));
    assert!(m.serves("sim-org", 4245) && !m.serves("sim-org", 9_999));
}
