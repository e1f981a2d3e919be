//! The GitHub client when GitHub behaves unlike github.com's happy path: a slow answer on
//! a connection that sat idle in the pool.

use std::time::Duration;

use crate::github::{APP_ID, app_for, org};
use common::fake_github::{Endpoint, FakeGitHub};
use dockhand::config::GitHubSettings;
use dockhand::telemetry::chain;

use crate::common;

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
