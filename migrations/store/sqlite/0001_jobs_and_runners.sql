-- Job and runner state. Timestamps are unix milliseconds, in both backends.
-- jobs.state: pending (claimable), launching (leased), launched, running, completed,
-- cancelled, failed, unmatched, dry_run.
CREATE TABLE jobs (
    job_id           INTEGER PRIMARY KEY,
    state            TEXT    NOT NULL,
    pool             TEXT,
    repo             TEXT    NOT NULL,
    installation_id  INTEGER,
    run_id           INTEGER NOT NULL,
    labels           TEXT    NOT NULL,          -- JSON array
    attempt          INTEGER NOT NULL DEFAULT 0,
    runner_name      TEXT,
    runner_id        INTEGER,                   -- GitHub's id for the JIT runner
    task_arn         TEXT,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    conclusion       TEXT,
    reason           TEXT,                      -- why it failed or was deferred last
    created_at       INTEGER NOT NULL,          -- GitHub's timestamps
    started_at       INTEGER,
    completed_at     INTEGER,
    received_at      INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX jobs_live_by_pool ON jobs (pool, state);

-- One row per runner dockhand registered: which task it runs in, and which job GitHub
-- actually gave it (any job with matching labels, not necessarily the one it was for).
CREATE TABLE runners (
    runner_name  TEXT    PRIMARY KEY,
    pool         TEXT    NOT NULL,
    for_job_id   INTEGER NOT NULL,
    runner_id    INTEGER,
    task_arn     TEXT,
    state        TEXT    NOT NULL,              -- registered, launched, busy, finished, removed
    ran_job_id   INTEGER,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX runners_for_job ON runners (for_job_id);
