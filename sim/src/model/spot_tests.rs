//! Spot interruptions: only tasks on `FARGATE_SPOT`, before a job (the job stays queued
//! for a replacement) or during one (GitHub fails it), and the books' view of them.

use std::time::Duration;

use super::tests::{actions, launch, model};
use super::*;

/// Registers a runner for `job` and starts its task on capacity provider `provider`, as the
/// ECS API does for a `capacityProviderStrategy`.
fn launch_on(model: &mut Model, job: u64, provider: &str) -> String {
    let (_, jit) = model
        .register_jit(
            &format!("dh-{job}-{provider}"),
            model.settings.labels.clone(),
            1,
        )
        .unwrap();
    model.run_task(RunTaskRequest {
        task_definition: "runner".into(),
        started_by: Some(format!("dockhand-job-{job}")),
        launch_type: Some("FARGATE".into()),
        capacity_provider: Some(provider.into()),
        jit: Some(jit),
        ..RunTaskRequest::default()
    })
}

/// A model where every task on Spot is interrupted.
fn spot_model() -> Model {
    let mut m = model();
    m.settings.spot_interruption_rate = 1.0;
    m
}

/// Moves the task's Spot interruption to `after` from now.
fn interrupt_in(m: &mut Model, arn: &str, after: Duration) {
    let at = m.clock.now() + after;
    let task = m.tasks.get_mut(arn).unwrap();
    if let Some(old) = task.interrupt_at.replace(at) {
        m.pending.remove(&(old, arn.to_string()));
    }
    m.pending.insert((at, arn.to_string()));
}

#[test]
fn spot_interrupts_tasks_on_fargate_spot_only_within_its_window() {
    let mut m = spot_model();
    // Runners come up (at once) with nothing to run: the window is 0 to 3,600 s.
    let spot: Vec<String> = (0..20)
        .map(|i| launch_on(&mut m, i, "FARGATE_SPOT"))
        .collect();
    let fargate: Vec<String> = (20..40).map(|i| launch_on(&mut m, i, "FARGATE")).collect();
    let plain: Vec<String> = (40..60)
        .map(|i| launch(&mut m, i, &format!("t{i}")))
        .collect();
    let latest = m.clock.now() + Duration::from_secs(3600);
    for arn in &spot {
        assert!(m.tasks[arn].interrupt_at.is_some_and(|at| at <= latest));
    }
    for arn in fargate.iter().chain(&plain) {
        assert_eq!(m.tasks[arn].interrupt_at, None);
    }
    m.tick();
    m.clock.advance(Duration::from_secs(3601));
    m.tick();
    for arn in &spot {
        let task = &m.tasks[arn];
        assert_eq!(task.stop_code, Some(SPOT_INTERRUPTION));
        assert_eq!(task.interrupted, Some(Interruption::BeforeJob));
    }
    for arn in fargate.iter().chain(&plain) {
        assert_eq!(m.tasks[arn].status, TaskStatus::Running);
    }
    assert_eq!(m.idle_runners(), 40);
}

#[test]
fn a_spot_interruption_before_its_runner_takes_a_job_leaves_the_job_queued_for_a_replacement() {
    let mut m = spot_model();
    m.settings.task_start = (Duration::from_secs(60), Duration::from_secs(60));
    let job = m.queue_job(false);
    let provisioning = launch_on(&mut m, job, "FARGATE_SPOT");
    interrupt_in(&mut m, &provisioning, Duration::from_secs(30));
    m.clock.advance(Duration::from_secs(30));
    m.tick();
    let task = &m.tasks[&provisioning];
    assert_eq!(task.stop_code, Some(SPOT_INTERRUPTION));
    assert_eq!(task.interrupted, Some(Interruption::BeforeJob));
    assert_eq!(task.started, None);
    assert_eq!(task.exit_code, None, "its container never started");
    assert_eq!(m.jobs[&job].state, JobState::Queued);
    // The replacement, on FARGATE, serves the job.
    let replacement = launch_on(&mut m, job, "FARGATE");
    m.clock.advance(Duration::from_secs(60));
    m.tick();
    assert_eq!(
        m.jobs[&job].ran_on.map(|(runner, _)| runner),
        m.tasks[&replacement].runner
    );
    assert_eq!(m.counters.busy_runners_killed, 0);
}

#[test]
fn a_spot_interruption_of_an_idle_runner_takes_it_offline_and_leaves_the_job_queued() {
    let mut m = spot_model();
    let arn = launch_on(&mut m, 1, "FARGATE_SPOT");
    interrupt_in(&mut m, &arn, Duration::from_secs(30));
    m.tick();
    assert_eq!(m.idle_runners(), 1);
    m.clock.advance(Duration::from_secs(30));
    m.tick();
    let task = &m.tasks[&arn];
    assert_eq!(task.interrupted, Some(Interruption::BeforeJob));
    assert_eq!(task.exit_code, Some(143));
    let runner = &m.runners[&task.runner.unwrap()];
    assert_eq!((runner.state, runner.listed), (RunnerState::Gone, true));
    assert_eq!(m.idle_runners(), 0);
    // A job queued now waits for a replacement.
    let job = m.queue_job(false);
    m.tick();
    assert_eq!(m.jobs[&job].state, JobState::Queued);
}

#[test]
fn a_spot_interruption_during_a_job_fails_it_without_counting_a_busy_runner_killed() {
    let mut m = spot_model();
    let job = m.queue_job(false);
    let arn = launch_on(&mut m, job, "FARGATE_SPOT");
    interrupt_in(&mut m, &arn, Duration::from_secs(60));
    m.tick();
    assert!(matches!(m.jobs[&job].state, JobState::Running { .. }));
    m.clock.advance(Duration::from_secs(60));
    let hooks = m.tick();
    assert_eq!(m.jobs[&job].state, JobState::Done(Conclusion::Failure));
    assert_eq!(actions(&hooks).last(), Some(&(job, "completed")));
    assert_eq!(
        m.tasks[&arn].interrupted,
        Some(Interruption::DuringJob(job))
    );
    assert_eq!(m.tasks[&arn].exit_code, Some(143));
    assert_eq!(m.counters.busy_runners_killed, 0);
}

#[test]
fn a_job_that_ended_before_its_tasks_spot_interruption_succeeded() {
    let mut m = spot_model();
    let job = m.queue_job(false);
    let arn = launch_on(&mut m, job, "FARGATE_SPOT");
    interrupt_in(&mut m, &arn, Duration::from_secs(3700));
    m.tick();
    // One tick past both the job's end (3,600 s) and the interruption.
    m.clock.advance(Duration::from_secs(3800));
    m.tick();
    assert_eq!(m.jobs[&job].state, JobState::Done(Conclusion::Success));
    assert_eq!(m.tasks[&arn].stop_code, Some("EssentialContainerExited"));
    assert_eq!(m.tasks[&arn].interrupted, None);
}

#[test]
fn describe_tasks_shows_a_spot_interruption() {
    let mut m = spot_model();
    let arn = launch_on(&mut m, 1, "FARGATE_SPOT");
    interrupt_in(&mut m, &arn, Duration::from_secs(10));
    m.tick();
    m.clock.advance(Duration::from_secs(10));
    m.tick();
    let json = m.task_json(&arn, false);
    assert_eq!(json["lastStatus"], "STOPPED");
    assert_eq!(json["stopCode"], "SpotInterruption");
    assert_eq!(json["stoppedReason"], "Your Spot Task was interrupted.");
    assert_eq!(json["capacityProviderName"], "FARGATE_SPOT");
    assert_eq!(json["launchType"], "FARGATE");
    assert_eq!(json["containers"][0]["exitCode"], 143);
}

#[test]
fn the_books_count_a_job_failed_by_spot_as_failed_by_spot_and_a_replaced_runner_once() {
    let mut m = spot_model();
    // The runner launched for the first job comes up idle before the job is queued, and
    // Spot interrupts it; the job's replacement runs on FARGATE.
    let first = FIRST_JOB_ID;
    let idle = launch_on(&mut m, first, "FARGATE_SPOT");
    interrupt_in(&mut m, &idle, Duration::from_secs(10));
    m.tick();
    m.clock.advance(Duration::from_secs(10));
    m.tick();
    assert_eq!(m.queue_job(false), first);
    launch_on(&mut m, first, "FARGATE");
    m.tick();
    // The second job's runner is interrupted while it runs the job.
    let second = m.queue_job(false);
    let busy = launch_on(&mut m, second, "FARGATE_SPOT");
    interrupt_in(&mut m, &busy, Duration::from_secs(10));
    m.tick();
    m.clock.advance(Duration::from_secs(3600));
    m.tick();
    assert_eq!(m.jobs[&first].state, JobState::Done(Conclusion::Success));
    assert_eq!(m.jobs[&second].state, JobState::Done(Conclusion::Failure));

    let books = crate::books::Books::read(&m, &[first, second].into());
    assert_eq!((books.owed, books.launched), (2, 2));
    assert!(books.unfinished.is_empty() && books.launched_twice.is_empty());
    assert_eq!(books.busy_runners_killed, 0);
    assert_eq!((books.spot.before_job, books.spot.during_job), (1, 1));
    assert_eq!(books.spot.failed_jobs, [second].into());
    assert_eq!(books.spot.replacements, [("FARGATE".to_string(), 1)].into());
    assert_eq!(
        books.spot.launches,
        [("FARGATE".to_string(), 1), ("FARGATE_SPOT".to_string(), 2)].into()
    );
    assert!(
        books.failures(None).is_empty(),
        "{:?}",
        books.failures(None)
    );
}
