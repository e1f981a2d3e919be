-- The runner lifecycle (issue 15): what the reconciler learns of each runner's task, how
-- often a job's runner was replaced, and which process leads the reconciler.
--   runners.state gains `stopped`: its task stopped before the runner took a job.
--   runners.cluster: where its task runs (copied from the job when the task is recorded).
--   task_status: ECS's lastStatus when last described; the rest as ECS reported them.
ALTER TABLE runners ADD COLUMN cluster TEXT;
ALTER TABLE runners ADD COLUMN task_status TEXT;
ALTER TABLE runners ADD COLUMN task_started_at BIGINT;
ALTER TABLE runners ADD COLUMN task_stopped_at BIGINT;
ALTER TABLE runners ADD COLUMN stop_code TEXT;
ALTER TABLE runners ADD COLUMN stopped_reason TEXT;
ALTER TABLE runners ADD COLUMN exit_code BIGINT;
-- A job's runner replaced this many times (reset by a requeue), and when the reconciler
-- last asked GitHub about it.
ALTER TABLE jobs ADD COLUMN replacements BIGINT NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN verified_at BIGINT;
-- One row per role led by one process at a time (the reconciler), held by a lease judged
-- by the database's clock.
CREATE TABLE leaders (
    role        TEXT   PRIMARY KEY,
    owner       TEXT   NOT NULL,
    expires_at  BIGINT NOT NULL,
    since       BIGINT NOT NULL
);
-- Jobs gone quiet are found by GitHub's view and age.
CREATE INDEX jobs_by_github_age ON jobs (github, updated_at);
