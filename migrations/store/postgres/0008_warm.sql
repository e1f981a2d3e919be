-- Warm pools (issue 17): runners launched for no job, kept idle for the next one.
--   runners.for_job_id becomes optional: NULL for a warm runner.
--   runners.warm_slot: the warm slot a warm runner fills (NULL for a job's runner).
--   runners.repo / installation_id: where a warm runner registered (its pool's
--   warm_target) and as which installation; a job's runner takes both from its job.
ALTER TABLE runners ALTER COLUMN for_job_id DROP NOT NULL;
ALTER TABLE runners ADD COLUMN warm_slot BIGINT;
ALTER TABLE runners ADD COLUMN repo TEXT;
ALTER TABLE runners ADD COLUMN installation_id BIGINT;
-- One row per pool and warm slot: the generation of the slot's current runner. A warm
-- runner is named dh-{pool}-w{slot}-{generation}, the name recorded before anything is
-- registered, and the generation taken by a conditional update: a crash or a second
-- leader cannot launch a slot's generation twice.
CREATE TABLE warm_slots (
    pool        TEXT   NOT NULL,
    slot        BIGINT NOT NULL,
    generation  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (pool, slot)
);
