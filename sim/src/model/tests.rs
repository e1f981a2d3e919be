//! The model behaves like GitHub and ECS where dockhand depends on it.

use std::time::Duration;

use super::*;
use crate::clock::Clock;
use crate::settings::Settings;

/// A model whose tasks come up at once and whose jobs run for a simulated hour.
pub(super) fn model() -> Model {
    let settings = Settings {
        task_start: (Duration::ZERO, Duration::ZERO),
        job_duration: (Duration::from_secs(3600), Duration::from_secs(3600)),
        ..Settings::default()
    };
    Model::new(settings, Clock::start(1.0))
}

pub(super) fn launch(model: &mut Model, job: u64, token: &str) -> String {
    let (_, jit) = model
        .register_jit(&format!("dh-{job}"), model.settings.labels.clone(), 1)
        .unwrap();
    model.run_task(RunTaskRequest {
        task_definition: "runner".into(),
        started_by: Some(format!("dockhand-job-{job}")),
        client_token: Some(token.into()),
        launch_type: Some("FARGATE".into()),
        capacity_provider: None,
        jit: Some(jit),
        ..RunTaskRequest::default()
    })
}

pub(super) fn actions(hooks: &[Webhook]) -> Vec<(u64, &'static str)> {
    hooks.iter().map(|h| (h.job, h.action)).collect()
}

#[test]
fn the_oldest_queued_job_takes_the_first_runner_whoever_it_was_launched_for() {
    let mut m = model();
    let old = m.queue_job(false);
    let new = m.queue_job(false);
    assert_eq!(actions(&m.tick()), [(old, "queued"), (new, "queued")]);
    // A runner launched for the newer job comes up: GitHub gives it the older one.
    launch(&mut m, new, "t1");
    assert_eq!(actions(&m.tick()), [(old, "in_progress")]);
    let runner = m.jobs[&old].ran_on.unwrap();
    assert_eq!(runner.1, Origin::Dockhand);
    assert_eq!(m.jobs[&new].state, JobState::Queued);
}

#[test]
fn a_client_token_seen_before_answers_the_same_task() {
    let mut m = model();
    let job = m.queue_job(false);
    let first = launch(&mut m, job, "same");
    let again = m.run_task(RunTaskRequest {
        task_definition: "runner".into(),
        started_by: Some(format!("dockhand-job-{job}")),
        client_token: Some("same".into()),
        launch_type: Some("FARGATE".into()),
        capacity_provider: None,
        jit: None,
        ..RunTaskRequest::default()
    });
    assert_eq!(first, again);
    assert_eq!(m.tasks.len(), 1);
    assert_eq!(m.counters.client_token_replays, 1);
}

#[test]
fn a_busy_runner_cannot_be_deleted_and_an_idle_ones_task_exits_when_it_is() {
    let mut m = model();
    let a = m.queue_job(false);
    let arn_a = launch(&mut m, a, "ta");
    m.tick();
    let busy = m.jobs[&a].ran_on.unwrap().0;
    assert_eq!(m.delete_runner(busy), Err(DeleteError::Busy));
    // A second runner comes up with nothing to do; deleting it ends its task.
    let arn_b = launch(&mut m, 999, "tb");
    m.tick();
    let idle = m.tasks[&arn_b].runner.unwrap();
    assert_eq!(m.delete_runner(idle), Ok(()));
    assert_eq!(m.tasks[&arn_b].status, TaskStatus::Stopped);
    assert_eq!(m.tasks[&arn_a].status, TaskStatus::Running);
    assert_eq!(m.delete_runner(idle), Err(DeleteError::NotFound));
}

#[test]
fn stopping_a_busy_runners_task_fails_its_job() {
    let mut m = model();
    let job = m.queue_job(false);
    let arn = launch(&mut m, job, "t");
    m.tick();
    m.stop_task(&arn, "scale in").unwrap();
    assert_eq!(m.jobs[&job].state, JobState::Done(Conclusion::Failure));
    assert_eq!(m.counters.busy_runners_killed, 1);
    assert_eq!(m.tasks[&arn].stop_code, Some("UserInitiated"));
    assert_eq!(actions(&m.tick()).last(), Some(&(job, "completed")));
}

#[test]
fn a_task_with_a_deleted_registration_exits_and_its_runner_never_comes_online() {
    let mut m = model();
    let (runner, jit) = m
        .register_jit("dh-x", m.settings.labels.clone(), 1)
        .unwrap();
    m.delete_runner(runner["id"].as_u64().unwrap()).unwrap();
    let arn = m.run_task(RunTaskRequest {
        task_definition: "runner".into(),
        jit: Some(jit),
        ..RunTaskRequest::default()
    });
    m.tick();
    assert_eq!(m.tasks[&arn].stop_code, Some("EssentialContainerExited"));
    assert_eq!(m.tasks[&arn].exit_code, Some(1));
    assert_eq!(m.idle_runners(), 0);
}

#[test]
fn list_tasks_pages_in_creation_order_and_leaves_out_stopped_tasks_by_default() {
    let mut m = model();
    let arns: Vec<String> = (0..5)
        .map(|i| launch(&mut m, 100 + i, &format!("t{i}")))
        .collect();
    m.stop_task(&arns[1], "done").unwrap();
    let (page, next) = m.list_tasks(None, false, 0, 2);
    assert_eq!(page, [arns[0].clone(), arns[2].clone()]);
    let (rest, end) = m.list_tasks(None, false, next.unwrap(), 2);
    assert_eq!(rest, [arns[3].clone(), arns[4].clone()]);
    assert_eq!(end, None);
    assert_eq!(m.list_tasks(None, true, 0, 100).0, [arns[1].clone()]);
    assert_eq!(
        m.list_tasks(Some("dockhand-job-103"), false, 0, 100).0,
        [arns[3].clone()]
    );
}

/// Within a second of `secs`: the clock also runs on in real time, slowly (scale 1).
fn about(time: Duration, secs: u64) -> bool {
    let secs = Duration::from_secs(secs);
    time >= secs && time < secs + Duration::from_secs(1)
}

#[test]
fn dockhands_runners_idle_time_is_counted_until_they_take_a_job_or_go_away() {
    let mut m = model();
    // Comes online with nothing queued, and waits 30 s for a job.
    launch(&mut m, 1, "t1");
    m.tick();
    m.clock.advance(Duration::from_secs(30));
    let job = m.queue_job(false);
    m.tick();
    assert!(matches!(m.jobs[&job].state, JobState::Running { .. }));
    assert!(about(m.counters.idle_runner_time, 30));
    // Idle 20 s, then its registration is deleted.
    launch(&mut m, 2, "t2");
    m.tick();
    let deleted = m.runners.values().find(|r| r.name == "dh-2").unwrap().id;
    m.clock.advance(Duration::from_secs(20));
    m.delete_runner(deleted).unwrap();
    // Idle 10 s, then its task is stopped.
    let stopped = launch(&mut m, 3, "t3");
    m.tick();
    m.clock.advance(Duration::from_secs(10));
    m.stop_task(&stopped, "scale in").unwrap();
    assert!(about(m.counters.idle_runner_time, 60));
    // Idle now, for 5 s so far; a stranger's idle time is not dockhand's.
    launch(&mut m, 4, "t4");
    m.add_stranger();
    m.tick();
    m.clock.advance(Duration::from_secs(5));
    assert!(
        about(m.idle_runner_time(), 65),
        "{:?}",
        m.idle_runner_time()
    );
    assert!(about(m.counters.idle_runner_time, 60));

    let delivered = std::collections::HashSet::from([job]);
    let books = crate::books::Books::read(&m, &delivered);
    assert_eq!(books.owed, 1);
    assert!((65.0..66.0).contains(&books.idle_runner_secs), "{books:?}");
    assert_eq!(books.idle_secs_per_job, books.idle_runner_secs);
    // The busy runner's, dh-4's, and dh-3's: GitHub lists a runner whose task stopped
    // (offline) until someone deletes it.
    assert_eq!(m.leftovers().registrations, 3);
    assert_eq!(m.leftovers().idle_runners, 1);
}

#[test]
fn the_job_api_follows_a_job_from_queued_to_completed_in_its_own_repository_only() {
    let mut m = model();
    let job = m.queue_job(false);
    let repo = m.jobs[&job].repo.clone();
    let view = m.workflow_job(&repo, job).unwrap();
    assert_eq!(
        (view["status"].as_str(), &view["conclusion"]),
        (Some("queued"), &serde_json::Value::Null)
    );
    assert!(view["runner_name"].is_null() && view["completed_at"].is_null());
    launch(&mut m, job, "t");
    m.tick();
    let view = m.workflow_job(&repo.to_uppercase(), job).unwrap();
    assert_eq!(view["status"], "in_progress");
    assert_eq!(view["runner_name"], format!("dh-{job}"));
    m.clock.advance(Duration::from_secs(3600));
    m.tick();
    let view = m.workflow_job(&repo, job).unwrap();
    assert_eq!(
        (view["status"].as_str(), view["conclusion"].as_str()),
        (Some("completed"), Some("success"))
    );
    assert!(view["completed_at"].is_string());
    assert_eq!(view["head_branch"], "main");
    assert!(m.workflow_job("sim-org/elsewhere", job).is_none());
    assert!(m.workflow_job(&repo, job + 1).is_none());
}

#[test]
fn a_tasks_tags_show_only_when_asked_for_with_ecs_managed_ones_after_the_requests() {
    let mut m = model();
    let arn = m.run_task(RunTaskRequest {
        task_definition: "runner".into(),
        tags: vec![("dockhand:runner".into(), "dh-1".into())],
        managed_tags: true,
        ..RunTaskRequest::default()
    });
    assert!(m.task_json(&arn, false).get("tags").is_none());
    assert_eq!(
        m.task_json(&arn, true)["tags"],
        serde_json::json!([
            {"key": "dockhand:runner", "value": "dh-1"},
            {"key": "aws:ecs:clusterName", "value": "sim"},
        ])
    );
}
