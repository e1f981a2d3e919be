-- A job's history (issue 14): an append-only record of everything that happened to a job,
-- written in the same transaction as each change to its row, so the two cannot disagree.
--   kind: a closed set (received, matched, unmatched, deferred, claimed, registered,
--     launched, adopted, duplicate, started, completed, cancelled, waived, failed,
--     dead_lettered, requeued, dry_run, runner_removed, runner_taken, ...).
--   process: the process that wrote it (a worker's lease owner and host).
--   detail: a small JSON object; never a secret, a JIT config or a payload.
--   once: set on entries written at most once per job and key (a delivery id, a pool), so
--     that a message delivered again adds nothing (the unique index below).
-- Entries may exist before the job's row does (a job deferred before its claim), or without
-- one (no pool serves it); they are pruned with the job, or after the retention when it has
-- no row.
CREATE TABLE job_history (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id    INTEGER NOT NULL,
    at        INTEGER NOT NULL,
    kind      TEXT   NOT NULL,
    process   TEXT   NOT NULL,
    once      TEXT,
    detail    TEXT   NOT NULL
);
CREATE INDEX job_history_by_job ON job_history (job_id, id);
CREATE INDEX job_history_by_at ON job_history (at);
CREATE UNIQUE INDEX job_history_once ON job_history (job_id, once) WHERE once IS NOT NULL;
-- The lease a claim took over (its worker stopped mid-way), for the history to name it.
ALTER TABLE jobs ADD COLUMN previous_owner TEXT;
-- `dockhand jobs list` shows the newest first.
CREATE INDEX jobs_by_received ON jobs (received_at);
