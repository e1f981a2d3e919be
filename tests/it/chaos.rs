//! The short chaos soak (issue 13): `dockhand serve` inside the simulated GitHub and ECS,
//! with duplicate and reordered deliveries, cancellations, strangers' runners, injected
//! server errors and timeouts, and a `kill -9` mid-run. The simulator's books must show
//! every job run exactly once, one runner per owed job, and only the poison dead-lettered.
//! The long soak is `cargo bench --bench chaos` (docs/benchmarks.md).

use std::path::{Path, PathBuf};
use std::time::Duration;

use dockhand_sim::Settings;
use dockhand_sim::soak::{self, SoakOptions};

fn options(dir: &Path, seed: u64) -> SoakOptions {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    SoakOptions {
        bin: PathBuf::from(env!("CARGO_BIN_EXE_dockhand")),
        private_key: fixtures.join("github-app-test-key.pem"),
        public_key: fixtures.join("github-app-test-key.pub.pem"),
        dir: dir.to_path_buf(),
        jobs: 300,
        poison: 3,
        rate: 30.0,
        kill_every: Some(Duration::from_secs(4)),
        settle_timeout: Duration::from_secs(150),
        concurrency: 16,
        leftovers_fail: false,
        sim: Settings::chaos(seed),
        warm: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_single_node_soak_runs_every_job_once_through_kills_and_faults() {
    let dir = tempfile::tempdir().unwrap();
    let report = soak::single_node(&options(dir.path(), 13)).await.unwrap();
    assert!(report.passed(), "the soak failed its checks:\n{report}");
    // The chaos happened: without it the checks would prove little.
    let b = &report.books;
    assert!(report.processes.kills >= 2, "{report}");
    assert!(
        b.cancelled_while_queued > 0 && b.ran_on_strangers > 0,
        "{report}"
    );
    let [_, _, _, _, _, duplicated, _] = report.webhooks;
    assert!(duplicated > 50, "{report}");
    assert!(
        !report.github_faults.is_empty() && !report.ecs_faults.is_empty(),
        "{report}"
    );
    assert_eq!(report.dead_letters.len(), 3, "{report}");
    assert!(report.log_lines > 1000, "{report}");
}
