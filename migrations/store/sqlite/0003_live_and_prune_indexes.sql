-- live_runners (run for every queued message) counts a pool's runners by state.
CREATE INDEX runners_live_by_pool ON runners (pool, state);
-- The prune pass finds finished rows by state and age.
CREATE INDEX jobs_by_state_age ON jobs (state, updated_at);
CREATE INDEX runners_by_state_age ON runners (state, updated_at);
