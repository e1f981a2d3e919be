-- The ECS cluster a job's task is launched in, recorded before the launch, so that a
-- take-over looks for the task there even after the pool moved to another cluster.
-- NULL on rows from before this column: the pool's cluster is used for them.
ALTER TABLE jobs ADD COLUMN cluster TEXT;
