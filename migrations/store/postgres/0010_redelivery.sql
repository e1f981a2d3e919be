-- Missed webhooks come back (issue 19).
--   redelivery_checkpoints: per GitHub App, the newest delivery the recovery loop has read
--   from the App's delivery log; the next pass, on any process, reads back to it.
--   failed_deliveries: one row per event (delivery guid) whose delivery failed: the newest
--   failed delivery, the one last redelivered and when it was asked for (dockhand's clock),
--   how many asks counted against max_attempts, and what came of it
--   (`failing`, `recovered` once any delivery of the event succeeded, `exhausted` after
--   `max_attempts`). Times are GitHub's `delivered_at`, in unix milliseconds.
CREATE TABLE redelivery_checkpoints (
    app_id        BIGINT PRIMARY KEY,
    delivered_at  BIGINT NOT NULL,
    delivery_id   BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE TABLE failed_deliveries (
    guid               TEXT   PRIMARY KEY,
    app_id             BIGINT NOT NULL,
    delivery_id        BIGINT NOT NULL,
    action             TEXT,
    first_failed_at    BIGINT NOT NULL,
    failed_at          BIGINT NOT NULL,
    status_code        BIGINT NOT NULL,
    asked_delivery_id  BIGINT,
    asked_at           BIGINT,
    attempts           BIGINT NOT NULL DEFAULT 0,
    state              TEXT   NOT NULL DEFAULT 'failing',
    updated_at         BIGINT NOT NULL
);
CREATE INDEX failed_deliveries_by_state ON failed_deliveries (state, first_failed_at);
