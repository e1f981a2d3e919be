//! dockhand: GitHub `workflow_job` webhooks in, one ephemeral ECS runner per job out.
//!
//! The flow, in module order:
//! - `ingress` verifies a delivery's signature, parses it into `domain` values, matches
//!   the job's labels against the `pool`s, and answers 2xx only once the `queue` holds an
//!   envelope for it.
//! - The `queue` (SQS, or an embedded SQLite file with SQS's semantics) carries envelopes
//!   to the workers and keeps each message until its outcome is durable.
//! - A `worker` receives a message, claims the job in the `store` (which makes launches
//!   exactly-once across workers), asks `github` for a just-in-time runner config, starts
//!   the runner with `ecs` RunTask, records the outcome, and only then deletes the
//!   message. A transient failure brings the message back later; a permanent one sends it
//!   to the dead-letter queue with its reason.
//! - The `lifecycle` reconciler follows every runner to its end; in its leader,
//!   `redelivery` asks GitHub to deliver again the webhooks that failed to arrive.
//! - `dlq` lists what died and why, and moves it back to the queue once the cause is fixed.
//! - `inspect` tells a job's story from the store's row and history ("why is my job still
//!   queued?"), for `dockhand jobs show` and the admin listener's `/jobs`.
//!
//! Around the flow: `config` (settings, their validation, and which roles a process
//! runs), `startup` (building and running the processes) and `reload` (pool changes while
//! running), `listener` (accepting connections with timeouts and a cap, for the webhook
//! and admin listeners), `admin` (`/metrics`, `/healthz`, `/readyz`), `metrics`,
//! `telemetry`, `cli`, `synthetic` (signed test deliveries for `send-event`, tests and
//! benchmarks), `pacing` (calls that wait their turn), and `write_gate` (SQLite's
//! writers, the queue's and the store's, taking turns in order).

pub mod ingress;
pub mod domain;
pub mod pool;
pub mod queue;
pub mod worker;
pub mod lifecycle;
pub mod redelivery;
mod pacing;
pub mod store;
pub mod github;
pub mod ecs;
pub mod dlq;
pub mod inspect;

pub mod config;
pub mod startup;
pub mod reload;
pub mod listener;
pub mod admin;
pub mod metrics;
pub mod telemetry;
pub mod cli;
pub mod synthetic;
pub mod write_gate;
