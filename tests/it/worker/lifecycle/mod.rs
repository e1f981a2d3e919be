//! The runner lifecycle: the reconciler's passes against moto's ECS (through the fault
//! proxy, which answers DescribeTasks as ECS does and shows what moto cannot: a PENDING
//! task, start times, stop codes), the fake GitHub, and both stores. Each test drives
//! passes by hand (`Reconciler::pass`) and checks tasks in ECS, registrations on GitHub,
//! rows and history in the store, messages on the queues, and metrics.

mod events;
mod leader;
mod orphans;
mod quiet;
mod reap;
mod replace;
mod reruns;
mod spot;
mod warm;
mod warm_changes;

use chrono::Utc;
use tokio::sync::watch;

use super::{Env, next};
use crate::common::*;
use dockhand::config::{LifecycleSettings, Settings};
use dockhand::domain::JobId;
use dockhand::lifecycle::{Pass, Reconciler};
use dockhand::store::{EventKind, RunnerRecord, Store};
use dockhand::worker::Worker;
use dockhand::worker::outcome::{Outcome, Settled};

/// The defaults, with a lease short enough for a take-over within a test.
fn lifecycle() -> LifecycleSettings {
    LifecycleSettings {
        interval: std::time::Duration::from_millis(200),
        leader_lease: std::time::Duration::from_secs(1),
        ..LifecycleSettings::default()
    }
}

/// A reconciler on the worker's store, queues and launchers, with these settings.
fn reconciler(worker: &Worker, settings: LifecycleSettings) -> Reconciler {
    // A receiver keeps the last value once its sender is gone.
    let (_, rx) = watch::channel(settings);
    worker.reconciler(rx).expect("a worker that launches")
}

async fn pass(reconciler: &Reconciler) -> Pass {
    reconciler.pass().await.expect("a reconcile pass")
}

/// Delivers `job` and launches it; answers its runner as the store has it.
async fn launched(env: &Env, worker: &Worker, job: u64) -> RunnerRecord {
    env.app.deliver(Delivery::signed(queued_job(job))).await;
    assert_eq!(next(worker).await, Settled::Done(Outcome::Launched));
    runner_of(worker.store(), job).await
}

/// The newest runner launched for `job`.
async fn runner_of(store: &Store, job: u64) -> RunnerRecord {
    store
        .runners()
        .await
        .unwrap()
        .into_iter()
        .rev()
        .find(|r| r.for_job_id == Some(JobId(job)))
        .unwrap_or_else(|| panic!("no runner for job {job}"))
}

async fn kinds(store: &Store, job: u64) -> Vec<&'static str> {
    store
        .history(JobId(job))
        .await
        .unwrap()
        .iter()
        .map(|e| e.kind.as_str())
        .collect()
}

async fn entries(store: &Store, job: u64, kind: EventKind) -> Vec<serde_json::Value> {
    store
        .history(JobId(job))
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == kind)
        .map(|e| e.detail)
        .collect()
}

/// Stops a task in moto, as ECS would stop it on its own.
async fn stop_in_ecs(env: &Env, task: &str, reason: &str) {
    env.ecs
        .client
        .stop_task()
        .cluster(&env.ecs.cluster)
        .task(task)
        .reason(reason)
        .send()
        .await
        .expect("StopTask on moto");
}

/// Epoch seconds `minutes` ago, as ECS's JSON answers times.
fn minutes_ago(minutes: i64) -> f64 {
    (Utc::now() - chrono::TimeDelta::minutes(minutes)).timestamp_millis() as f64 / 1000.0
}

/// The task's status in moto.
async fn status_in_ecs(env: &Env, task: &str) -> String {
    env.ecs
        .describe(task)
        .await
        .last_status()
        .unwrap()
        .to_string()
}

/// StopTask calls the proxy saw, with their reasons.
fn stop_calls(env: &Env) -> Vec<(String, String)> {
    env.proxy
        .calls()
        .into_iter()
        .filter(|c| c.operation == "StopTask")
        .map(|c| {
            (
                c.request["task"].as_str().unwrap_or_default().to_string(),
                c.request["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Adjusts an [`Env`]'s settings: the lifecycle as [`lifecycle`] has it.
fn with_lifecycle(s: &mut Settings) {
    s.lifecycle = lifecycle();
    // The reconciler's calls yield to registrations until an App's points are full again;
    // with GitHub's 900 a minute that takes a second or two after a launch, which these
    // tests' timing (passes a second apart) does not allow for. Points come back at once.
    s.github.limits.points_per_minute = 6_000_000;
}
