//! A runner is ready only `runner_ready` after its task runs, and an idle runner launched
//! for no job (a warm runner) takes the next queued job at once; the books see both.

use std::collections::HashSet;
use std::time::Duration;

use super::tests::{actions, launch, model};
use super::*;
use crate::books::Books;

const SEC: Duration = Duration::from_secs(1);

/// A model whose tasks run 10 s after RunTask and whose runners are ready 30 s after that.
fn slow_model() -> Model {
    let mut m = model();
    m.settings.task_start = (10 * SEC, 10 * SEC);
    m.settings.runner_ready = (30 * SEC, 30 * SEC);
    m
}

/// Starts a warm runner, as dockhand's reconciler does: registered, its task started by
/// the pool rather than by a job.
fn launch_warm(m: &mut Model, name: &str) -> String {
    let (_, jit) = m.register_jit(name, m.settings.labels.clone(), 1).unwrap();
    m.run_task(RunTaskRequest {
        task_definition: "runner".into(),
        started_by: Some("dockhand-warm-linux-x64".into()),
        launch_type: Some("FARGATE".into()),
        jit: Some(jit),
        ..RunTaskRequest::default()
    })
}

fn status(m: &Model, name: &str) -> String {
    let (_, runners) = m.list_runners(Some(name), 1, 10);
    runners[0]["status"].as_str().unwrap().to_string()
}

#[test]
fn a_runner_takes_a_job_only_once_ready_after_its_task_runs() {
    let mut m = slow_model();
    let job = m.queue_job(false);
    let arn = launch(&mut m, job, "t");
    m.tick();
    m.clock.advance(10 * SEC);
    m.tick();
    assert_eq!(m.tasks[&arn].status, TaskStatus::Running);
    assert_eq!(status(&m, &format!("dh-{job}")), "offline");
    m.clock.advance(29 * SEC);
    assert!(m.tick().is_empty());
    assert_eq!(m.jobs[&job].state, JobState::Queued);
    m.clock.advance(SEC);
    assert_eq!(actions(&m.tick()), [(job, "in_progress")]);
    let waited = m.jobs[&job].started.unwrap() - m.jobs[&job].created;
    assert!(waited >= 40 * SEC && waited < 41 * SEC, "{waited:?}");
    // Still coming up until then: the books count the launch all along.
    let books = Books::read(&m, &HashSet::from([job]));
    assert_eq!((books.owed, books.launched), (1, 1));
}

#[test]
fn a_registration_deleted_while_its_task_starts_up_makes_the_task_exit_when_ready() {
    let mut m = slow_model();
    let job = m.queue_job(false);
    let arn = launch(&mut m, job, "t");
    m.clock.advance(10 * SEC);
    m.tick();
    let runner = m.runners.values().find(|r| r.origin == Origin::Dockhand);
    m.delete_runner(runner.unwrap().id).unwrap();
    assert_eq!(m.tasks[&arn].status, TaskStatus::Running);
    m.clock.advance(30 * SEC);
    m.tick();
    assert_eq!(m.tasks[&arn].exit_code, Some(1));
    assert_eq!(m.counters.jit_refused, 1);
    assert_eq!(m.jobs[&job].state, JobState::Queued);
}

#[test]
fn a_warm_runner_takes_the_next_queued_job_at_once_and_the_books_count_a_warm_hit() {
    let mut m = slow_model();
    let warm = launch_warm(&mut m, "dh-linux-x64-w0-1");
    m.clock.advance(40 * SEC);
    m.tick();
    assert_eq!(m.idle_runners(), 1);
    let hit = m.queue_job(false);
    // Its own runner (the refill) is launched as ever; the next job waits for it.
    launch(&mut m, hit, "t-hit");
    let miss = m.queue_job(false);
    assert_eq!(
        actions(&m.tick()),
        [(hit, "queued"), (miss, "queued"), (hit, "in_progress")]
    );
    assert_eq!(
        m.jobs[&hit].ran_on.unwrap().0,
        m.tasks[&warm].runner.unwrap()
    );
    m.clock.advance(40 * SEC);
    m.tick();
    assert!(matches!(m.jobs[&miss].state, JobState::Running { .. }));

    let wait = Books::read(&m, &HashSet::from([hit, miss])).wait;
    assert_eq!((wait.jobs, wait.warm_hits), (2, 1), "{wait:?}");
    assert_eq!((wait.on_warm_runners, wait.warm_tasks), (1, 1), "{wait:?}");
    assert!(wait.p50 < 1.0 && wait.max >= 40.0, "{wait:?}");
}
