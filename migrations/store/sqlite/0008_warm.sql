-- Warm pools (issue 17): runners launched for no job, kept idle for the next one.
--   runners.for_job_id becomes optional: NULL for a warm runner (SQLite cannot drop a
--   NOT NULL, so the table is rebuilt with its indexes).
--   runners.warm_slot: the warm slot a warm runner fills (NULL for a job's runner).
--   runners.repo / installation_id: where a warm runner registered (its pool's
--   warm_target) and as which installation; a job's runner takes both from its job.
CREATE TABLE runners_new (
    runner_name      TEXT    PRIMARY KEY,
    pool             TEXT    NOT NULL,
    for_job_id       INTEGER,
    runner_id        INTEGER,
    task_arn         TEXT,
    state            TEXT    NOT NULL,
    ran_job_id       INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    cluster          TEXT,
    task_status      TEXT,
    task_started_at  BIGINT,
    task_stopped_at  BIGINT,
    stop_code        TEXT,
    stopped_reason   TEXT,
    exit_code        BIGINT,
    warm_slot        INTEGER,
    repo             TEXT,
    installation_id  INTEGER
);
INSERT INTO runners_new (runner_name, pool, for_job_id, runner_id, task_arn, state,
    ran_job_id, created_at, updated_at, cluster, task_status, task_started_at,
    task_stopped_at, stop_code, stopped_reason, exit_code)
SELECT runner_name, pool, for_job_id, runner_id, task_arn, state, ran_job_id, created_at,
    updated_at, cluster, task_status, task_started_at, task_stopped_at, stop_code,
    stopped_reason, exit_code
FROM runners;
DROP TABLE runners;
ALTER TABLE runners_new RENAME TO runners;
CREATE INDEX runners_for_job ON runners (for_job_id);
CREATE INDEX runners_live_by_pool ON runners (pool, state);
CREATE INDEX runners_by_state_age ON runners (state, updated_at);
-- One row per pool and warm slot: the generation of the slot's current runner. A warm
-- runner is named dh-{pool}-w{slot}-{generation}, the name recorded before anything is
-- registered, and the generation taken by a conditional update: a crash or a second
-- leader cannot launch a slot's generation twice.
CREATE TABLE warm_slots (
    pool        TEXT    NOT NULL,
    slot        INTEGER NOT NULL,
    generation  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (pool, slot)
);
