-- The embedded queue: SQS semantics in one SQLite table. `queue` is 'main' or
-- 'dead_letter'; moving a message to dead-letter is an update of that column.
CREATE TABLE queue_messages (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT    NOT NULL UNIQUE,
    queue         TEXT    NOT NULL,
    body          TEXT    NOT NULL,
    attributes    TEXT    NOT NULL,           -- JSON object of string values
    sent_at       INTEGER NOT NULL,           -- unix milliseconds
    visible_at    INTEGER NOT NULL,           -- unix milliseconds
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt       TEXT UNIQUE                 -- the current receive's handle
);

CREATE INDEX queue_messages_ready ON queue_messages (queue, visible_at, seq);
