//! Metric names, their help texts, and the Prometheus exporter. Every metric dockhand
//! emits is named here; label values come from closed sets (`as_str()` of an enum).

use std::sync::OnceLock;

use metrics::Unit;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Set once, by [`install`]; nothing else writes it.
const BUILD_INFO: &str = "dockhand_build_info";
pub const WEBHOOK_REQUESTS_TOTAL: &str = "dockhand_webhook_requests_total";
pub const WEBHOOK_REQUEST_SECONDS: &str = "dockhand_webhook_request_seconds";
pub const CONNECTIONS_TOTAL: &str = "dockhand_connections_total";
pub const OPEN_CONNECTIONS: &str = "dockhand_open_connections";
pub const ACCEPT_ERRORS_TOTAL: &str = "dockhand_accept_errors_total";
pub const QUEUE_SEND_TOTAL: &str = "dockhand_queue_send_total";
pub const QUEUE_SEND_SECONDS: &str = "dockhand_queue_send_seconds";
pub const QUEUE_BATCH_SIZE: &str = "dockhand_queue_batch_size";
pub const QUEUE_RECEIVE_TOTAL: &str = "dockhand_queue_receive_total";
pub const QUEUE_DELETE_TOTAL: &str = "dockhand_queue_delete_total";
pub const QUEUE_MESSAGES: &str = "dockhand_queue_messages";
pub const QUEUE_MESSAGES_IN_FLIGHT: &str = "dockhand_queue_messages_in_flight";
pub const JOBS_TOTAL: &str = "dockhand_jobs_total";
pub const RUNNER_LAUNCH_SECONDS: &str = "dockhand_runner_launch_seconds";
pub const JOB_WAIT_SECONDS: &str = "dockhand_job_wait_seconds";
pub const RUNNERS: &str = "dockhand_runners";
pub const ECS_REQUESTS_TOTAL: &str = "dockhand_ecs_requests_total";
pub const CONFIG_RELOADS_TOTAL: &str = "dockhand_config_reloads_total";
pub const STORE_PRUNED_TOTAL: &str = "dockhand_store_pruned_total";
pub const STORE_WRITE_SECONDS: &str = "dockhand_store_write_seconds";
pub const QUEUE_WRITE_SECONDS: &str = "dockhand_queue_write_seconds";
pub const RUNNER_STOPS_TOTAL: &str = "dockhand_runner_stops_total";
pub const JOBS_REPLACED_TOTAL: &str = "dockhand_jobs_replaced_total";
pub const REPLACEMENTS_EXHAUSTED_TOTAL: &str = "dockhand_replacements_exhausted_total";
pub const RUNNERS_REAPED_TOTAL: &str = "dockhand_runners_reaped_total";
pub const REAP_REFUSED_TOTAL: &str = "dockhand_reap_refused_total";
pub const JOBS_HEALED_TOTAL: &str = "dockhand_jobs_healed_total";
pub const ORPHANS_FOUND_TOTAL: &str = "dockhand_orphans_found_total";
pub const RECONCILE_SECONDS: &str = "dockhand_reconcile_seconds";
pub const RECONCILE_LEADER: &str = "dockhand_reconcile_leader";
pub const RECONCILE_ENABLED: &str = "dockhand_reconcile_enabled";
pub const RECONCILE_LAST_PASS: &str = "dockhand_reconcile_last_pass_timestamp_seconds";
pub const TASK_EVENTS_TOTAL: &str = "dockhand_task_events_total";
pub const SPOT_INTERRUPTIONS_TOTAL: &str = "dockhand_spot_interruptions_total";
pub const RERUNS_TOTAL: &str = "dockhand_reruns_total";
pub const WARM_TARGET: &str = "dockhand_warm_target";
pub const WARM_LAUNCHES_TOTAL: &str = "dockhand_warm_launches_total";
pub const WEBHOOK_REDELIVERIES_TOTAL: &str = "dockhand_webhook_redeliveries_total";
pub const WEBHOOK_UNRECOVERED_OLDEST_SECONDS: &str = "dockhand_webhook_unrecovered_oldest_seconds";
pub const WEBHOOK_RECOVERY_PASSES_TOTAL: &str = "dockhand_webhook_recovery_passes_total";

pub const GITHUB_REQUESTS_TOTAL: &str = "dockhand_github_requests_total";
pub const GITHUB_RATE_LIMIT_REMAINING: &str = "dockhand_github_rate_limit_remaining";
pub const GITHUB_BUDGET_REMAINING: &str = "dockhand_github_budget_remaining";
pub const GITHUB_BUDGET_WAIT_SECONDS: &str = "dockhand_github_budget_wait_seconds";
pub const GITHUB_LIMIT_ANSWERS_TOTAL: &str = "dockhand_github_limit_answers_total";
pub const ECS_RUN_TASK_WAIT_SECONDS: &str = "dockhand_ecs_run_task_wait_seconds";

/// Latency buckets in seconds, from sub-millisecond up to SQS's slowest sensible answer.
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// A reconcile pass: tens of milliseconds when little is live, minutes for a sweep of
/// thousands of tasks and registrations.
const RECONCILE_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0];
/// Job waits are what users feel: seconds when all is well, up to an hour when it is not.
const JOB_WAIT_BUCKETS: &[f64] = &[
    1.0, 5.0, 10.0, 15.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0, 900.0, 1800.0, 3600.0,
];

/// Records how long an operation took into a histogram with an `op` label, when dropped:
/// operations that fail count too.
pub struct OpTimer {
    metric: &'static str,
    op: &'static str,
    started: std::time::Instant,
}

impl OpTimer {
    pub fn start(metric: &'static str, op: &'static str) -> Self {
        Self {
            metric,
            op,
            started: std::time::Instant::now(),
        }
    }
}

impl Drop for OpTimer {
    fn drop(&mut self) {
        metrics::histogram!(self.metric, "op" => self.op)
            .record(self.started.elapsed().as_secs_f64());
    }
}

/// Installs the process-wide recorder once and returns the handle that renders it.
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(QUEUE_BATCH_SIZE.into()), BATCH_BUCKETS)
                })
                // A full-name matcher wins over the `_seconds` suffix.
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(JOB_WAIT_SECONDS.into()),
                        JOB_WAIT_BUCKETS,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(RECONCILE_SECONDS.into()),
                        RECONCILE_BUCKETS,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(GITHUB_BUDGET_WAIT_SECONDS.into()),
                        RECONCILE_BUCKETS,
                    )
                })
                .expect("bucket lists are non-empty")
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).expect("no other metrics recorder is installed");
            describe();
            handle
        })
        .clone()
}

fn describe() {
    metrics::describe_gauge!(BUILD_INFO, "Always 1; the labels tell the running version.");
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    metrics::describe_counter!(
        WEBHOOK_REQUESTS_TOTAL,
        Unit::Count,
        "Webhook deliveries answered, by event, workflow_job action and outcome."
    );
    metrics::describe_histogram!(
        WEBHOOK_REQUEST_SECONDS,
        Unit::Seconds,
        "Time to answer a webhook delivery, queue send included."
    );
    metrics::describe_counter!(
        CONNECTIONS_TOTAL,
        Unit::Count,
        "Connections ended, by listener (webhook, admin) and outcome: served (a request was \
         read), or closed before one was: timeout (no request head within header_timeout), \
         closed (the client hung up), invalid (not HTTP/1), refused (over max_connections)."
    );
    metrics::describe_gauge!(
        OPEN_CONNECTIONS,
        Unit::Count,
        "Connections open now, by listener; at max_connections new ones are refused."
    );
    metrics::describe_counter!(
        ACCEPT_ERRORS_TOTAL,
        Unit::Count,
        "Failed accept calls, by listener: out of file descriptors, or a connection that \
         broke while being accepted."
    );
    metrics::describe_counter!(
        QUEUE_SEND_TOTAL,
        Unit::Count,
        "Messages sent to the queue, by outcome (ok, unavailable, rejected)."
    );
    metrics::describe_histogram!(
        QUEUE_SEND_SECONDS,
        Unit::Seconds,
        "Time for one send or batch send to the queue."
    );
    metrics::describe_histogram!(
        QUEUE_BATCH_SIZE,
        Unit::Count,
        "Messages per queue send batch."
    );
    metrics::describe_counter!(
        QUEUE_RECEIVE_TOTAL,
        Unit::Count,
        "Messages received by workers (outcome ok), and failed receive calls (outcome error)."
    );
    metrics::describe_counter!(
        QUEUE_DELETE_TOTAL,
        Unit::Count,
        "Message deletes after an outcome was recorded, by outcome (ok, stale, error)."
    );
    metrics::describe_gauge!(
        QUEUE_MESSAGES,
        Unit::Count,
        "Approximate messages waiting, by queue (main, dead_letter); polled by workers."
    );
    metrics::describe_gauge!(
        QUEUE_MESSAGES_IN_FLIGHT,
        Unit::Count,
        "Approximate messages received but not yet settled, or delayed (a deferred job), by queue; polled by workers. Nothing is left to do when both gauges are 0."
    );
    metrics::describe_counter!(
        JOBS_TOTAL,
        Unit::Count,
        "Messages processed by workers, by pool and outcome (launched, adopted, duplicate, \
         dry_run, tracked, unmatched, failed, deferred_capacity, deferred_rate_limit, \
         deferred_pool_full, deferred_held, deferred_error)."
    );
    metrics::describe_histogram!(
        RUNNER_LAUNCH_SECONDS,
        Unit::Seconds,
        "From a worker receiving a queued job to its RunTask succeeding, by pool."
    );
    metrics::describe_histogram!(
        JOB_WAIT_SECONDS,
        Unit::Seconds,
        "What users feel: GitHub's created_at to started_at of jobs, from in_progress events."
    );
    metrics::describe_gauge!(
        RUNNERS,
        Unit::Count,
        "Runners dockhand registered, by pool and state; polled from the store by workers. \
         `idle` is the part of `launched` whose task is running and waiting for a job."
    );

    metrics::describe_counter!(
        GITHUB_REQUESTS_TOTAL,
        Unit::Count,
        "GitHub API calls, by endpoint and HTTP status (`error` when there was no answer)."
    );
    metrics::describe_gauge!(
        GITHUB_RATE_LIMIT_REMAINING,
        "GitHub API calls left in the current rate-limit window, per installation (`app` for the App's own)."
    );
    metrics::describe_counter!(
        ECS_REQUESTS_TOTAL,
        Unit::Count,
        "ECS API requests, by operation (run_task, list_tasks, describe_tasks, stop_task) and \
         outcome (ok, capacity, throttled, unavailable, rejected)."
    );
    metrics::describe_counter!(
        CONFIG_RELOADS_TOTAL,
        Unit::Count,
        "Configuration reloads, by outcome (applied, unchanged, invalid, unreadable); invalid \
         and unreadable ones were refused and the running configuration stayed."
    );
    metrics::describe_counter!(
        STORE_PRUNED_TOTAL,
        Unit::Count,
        "Finished rows workers deleted from the store after store.retention, by table (jobs, \
         runners, job_history, reruns)."
    );
    metrics::describe_histogram!(
        STORE_WRITE_SECONDS,
        Unit::Seconds,
        "Time for one store write, by op, from asking for a connection to the commit: \
         waiting for a free connection and for the SQLite file's write turn is included, so \
         contention shows here."
    );
    metrics::describe_histogram!(
        QUEUE_WRITE_SECONDS,
        Unit::Seconds,
        "Time for one write to the embedded queue, by op (send, receive, change_visibility, \
         delete), from asking for a connection to the commit, the wait for the file's write \
         turn included."
    );
    metrics::describe_counter!(
        RUNNER_STOPS_TOTAL,
        Unit::Count,
        "Runner tasks the reconciler found stopped, by pool and ECS stopCode \
         (TaskFailedToStart, EssentialContainerExited, UserInitiated, \
         ServiceSchedulerInitiated, SpotInterruption, TerminationNotice, other; unknown when \
         ECS no longer knew the task)."
    );
    metrics::describe_counter!(
        JOBS_REPLACED_TOTAL,
        Unit::Count,
        "Jobs given a new runner because theirs went away before taking a job, by pool and \
         reason (task_stopped, pending_timeout, quiet)."
    );
    metrics::describe_counter!(
        REPLACEMENTS_EXHAUSTED_TOTAL,
        Unit::Count,
        "Jobs dead-lettered because their runner died lifecycle.max_replacements times, by pool."
    );
    metrics::describe_counter!(
        RUNNERS_REAPED_TOTAL,
        Unit::Count,
        "Runners and registrations the reconciler removed, by pool and reason (idle, \
         max_idle_age, pending_timeout, max_runtime, orphan)."
    );
    metrics::describe_counter!(
        REAP_REFUSED_TOTAL,
        Unit::Count,
        "Idle runners the reconciler meant to remove that GitHub refused to delete because \
         they had just taken a job (422): left alone, by pool."
    );
    metrics::describe_counter!(
        JOBS_HEALED_TOTAL,
        Unit::Count,
        "Jobs gone quiet that GitHub had started or finished (their webhook was lost), put \
         right in the store, by pool."
    );
    metrics::describe_counter!(
        ORPHANS_FOUND_TOTAL,
        Unit::Count,
        "Leftovers the orphan sweep found, by kind (task, registration)."
    );
    metrics::describe_histogram!(
        RECONCILE_SECONDS,
        Unit::Seconds,
        "Time for one reconcile pass, by outcome (ok, error)."
    );
    metrics::describe_gauge!(
        RECONCILE_LEADER,
        "1 on the process that leads the reconciler, 0 on the others."
    );
    metrics::describe_gauge!(
        RECONCILE_ENABLED,
        "1 where the reconciler runs (lifecycle.enabled), 0 where it was turned off."
    );
    metrics::describe_gauge!(
        RECONCILE_LAST_PASS,
        "Unix time of the last reconcile pass that completed, on the leader."
    );
    metrics::describe_counter!(
        TASK_EVENTS_TOTAL,
        Unit::Count,
        "ECS task state change events workers read from the queue, by outcome (stopped, \
         running, unchanged: nothing new; unknown: not a live runner of dockhand's, or seen \
         already; ignored: the lifecycle is off; error: tried again later)."
    );
    metrics::describe_counter!(
        SPOT_INTERRUPTIONS_TOTAL,
        Unit::Count,
        "Runner tasks Spot interrupted, by pool and when (before_job: replaced on the next \
         capacity provider; during_job: the job failed on GitHub)."
    );
    metrics::describe_counter!(
        RERUNS_TOTAL,
        Unit::Count,
        "Re-runs of interrupted jobs' workflow runs, by pool and outcome (requested, covered: re-run \
         already; not_needed: the job succeeded; refused: GitHub said no; expired)."
    );
    metrics::describe_gauge!(
        WARM_TARGET,
        Unit::Count,
        "Idle runners each pool keeps ready now: its min_idle, or its matching schedule's."
    );
    metrics::describe_gauge!(
        GITHUB_BUDGET_REMAINING,
        "Budget each GitHub App has left, by app and limit (points: of the secondary limit's \
         points a minute, after its last call; primary: the lowest x-ratelimit-remaining of \
         its installations' hourly limits)."
    );
    metrics::describe_histogram!(
        GITHUB_BUDGET_WAIT_SECONDS,
        Unit::Seconds,
        "Time GitHub calls waited for room in an App's budget, by app."
    );
    metrics::describe_counter!(
        GITHUB_LIMIT_ANSWERS_TOTAL,
        Unit::Count,
        "403 and 429 rate-limit answers from GitHub, by app and kind (secondary, primary). \
         0 while the pacing works."
    );
    metrics::describe_histogram!(
        ECS_RUN_TASK_WAIT_SECONDS,
        Unit::Seconds,
        "Time RunTask calls waited for this process's pacing ([aws.run_task])."
    );
    metrics::describe_counter!(
        WARM_LAUNCHES_TOTAL,
        Unit::Count,
        "Warm runners the reconciler launched, by pool and outcome (launched, failed; resumed \
         or abandoned: a fill left part-way, its task found or its registration removed; \
         paused: held back while the pool's warm runners keep failing to start)."
    );
    metrics::describe_counter!(
        WEBHOOK_REDELIVERIES_TOTAL,
        Unit::Count,
        "Failed workflow_job webhook deliveries brought back, by outcome (requested: GitHub \
         was asked to deliver the event again; recovered: a delivery of an event asked for \
         succeeded; refused: GitHub refused the ask; exhausted: given up after \
         redelivery.max_attempts, or refused for good)."
    );
    metrics::describe_gauge!(
        WEBHOOK_UNRECOVERED_OLDEST_SECONDS,
        Unit::Seconds,
        "Age of the oldest failed workflow_job delivery within redelivery.lookback whose event \
         no delivery has brought through yet (0 when none), on the reconciler's leader."
    );
    metrics::describe_counter!(
        WEBHOOK_RECOVERY_PASSES_TOTAL,
        Unit::Count,
        "Passes of the webhook recovery loop over the Apps' delivery logs, by outcome (ok, \
         error)."
    );
}
