//! dockhand: GitHub `workflow_job` webhooks in, one ephemeral ECS runner per job out.
//!
//! The flow, in module order: `ingress` verifies and parses webhooks into `domain` values,
//! matches them against `pool`s and puts an envelope on the `queue`. `config`, `metrics`,
//! `telemetry`, `listener`, `admin` and `startup` serve every process; `synthetic` makes
//! test traffic.

pub mod admin;
pub mod cli;
pub mod config;
pub mod dlq;
pub mod domain;
pub mod ecs;
pub mod github;
pub mod ingress;
pub mod listener;
pub mod metrics;
pub mod pool;
pub mod queue;
pub mod reload;
pub mod startup;
pub mod store;
pub mod synthetic;
pub mod telemetry;
pub mod worker;
