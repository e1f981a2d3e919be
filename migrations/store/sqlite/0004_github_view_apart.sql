-- What GitHub says about a job and what dockhand did for it, in two columns instead of one
-- (issue 11): a job that ran on another job's runner still owes that job a launch.
--   launch (was state): owed (claimable), launching (leased), launched, adopted, failed,
--     dry_run, waived (the debt was cancelled: the job finished without a runner, or ran on
--     a runner dockhand did not launch).
--   github: queued, in_progress, completed.
--   ran_on: the runner GitHub gave the job; ran_on_dockhand: 1 if dockhand launched that
--     runner, 0 if not, NULL while unknown.
ALTER TABLE jobs RENAME COLUMN state TO launch;
ALTER TABLE jobs ADD COLUMN github TEXT NOT NULL DEFAULT 'queued';
ALTER TABLE jobs ADD COLUMN ran_on TEXT;
ALTER TABLE jobs ADD COLUMN ran_on_dockhand INTEGER;
UPDATE jobs SET github = CASE launch
    WHEN 'running' THEN 'in_progress'
    WHEN 'completed' THEN 'completed'
    WHEN 'cancelled' THEN 'completed'
    ELSE 'queued' END;
-- Older rows did not record which runner took a job: one that ran or finished without a
-- task of its own is taken as not owed, as the single state column had it.
UPDATE jobs SET launch = CASE
    WHEN launch = 'pending' THEN 'owed'
    WHEN launch IN ('running', 'completed', 'cancelled') AND task_arn IS NOT NULL THEN 'launched'
    WHEN launch IN ('running', 'completed', 'cancelled', 'unmatched') THEN 'waived'
    ELSE launch END;
