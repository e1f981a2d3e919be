-- Job and runner state. Timestamps are unix milliseconds, in both backends.
-- jobs.state: pending (claimable), launching (leased), launched, running, completed,
-- cancelled, failed, unmatched, dry_run.
CREATE TABLE jobs (
    job_id           BIGINT PRIMARY KEY,
    state            TEXT    NOT NULL,
    pool             TEXT,
    repo             TEXT    NOT NULL,
    installation_id  BIGINT,
    run_id           BIGINT NOT NULL,
    labels           TEXT    NOT NULL,          -- JSON array
    attempt          BIGINT  NOT NULL DEFAULT 0,
    runner_name      TEXT,
    runner_id        BIGINT,                   -- GitHub's id for the JIT runner
    task_arn         TEXT,
    lease_owner      TEXT,
    lease_expires_at BIGINT,
    conclusion       TEXT,
    reason           TEXT,                      -- why it failed or was deferred last
    created_at       BIGINT NOT NULL,          -- GitHub's timestamps
    started_at       BIGINT,
    completed_at     BIGINT,
    received_at      BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX jobs_live_by_pool ON jobs (pool, state);

-- One row per runner dockhand registered: which task it runs in, and which job GitHub
-- actually gave it (any job with matching labels, not necessarily the one it was for).
CREATE TABLE runners (
    runner_name  TEXT    PRIMARY KEY,
    pool         TEXT    NOT NULL,
    for_job_id   BIGINT NOT NULL,
    runner_id    BIGINT,
    task_arn     TEXT,
    state        TEXT    NOT NULL,              -- registered, launched, busy, finished, removed
    ran_job_id   BIGINT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX runners_for_job ON runners (for_job_id);
