-- Fargate Spot (issue 16).
--   jobs.interrupted_on: the capacity provider on which the job's last runner was
--   interrupted before it took a job; its replacement launches on the providers after it.
ALTER TABLE jobs ADD COLUMN interrupted_on TEXT;
-- One row per job interrupted while it ran, in a pool with `rerun_interrupted`: the
-- reconciler asks GitHub once to re-run the run's failed jobs after the run completes.
--   state: waiting (for the job and its run to complete), requesting (the re-run is being
--   asked for), requested (GitHub accepted it: `attempt` is the new run attempt), covered
--   (the run was re-run already, for another interrupted job or by a person), not_needed
--   (the job succeeded after all), refused (GitHub refused: `reason`), expired (the run
--   did not complete in time).
CREATE TABLE reruns (
    job_id          BIGINT PRIMARY KEY,
    run_id          BIGINT NOT NULL,
    repo            TEXT   NOT NULL,
    installation_id BIGINT,
    pool            TEXT,
    state           TEXT   NOT NULL,
    attempt         BIGINT,
    reason          TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
-- Pending re-runs are found by state; a launch asks whether its run was re-run.
CREATE INDEX reruns_by_state ON reruns (state, updated_at);
CREATE INDEX reruns_by_run ON reruns (run_id);
