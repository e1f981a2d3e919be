//! dockhand's integration tests, in one binary (each extra test binary links the AWS SDKs
//! and octocrab again). They drive the real code paths against real components: moto_server
//! for SQS, ECS and SSM, Postgres and SQLite, and a fake GitHub that checks every request.
//! `scripts/test` provides moto and Postgres; `common` gives each test its own ports,
//! queues, databases and clusters, so the tests run in parallel.

mod common;

mod ingress_bad_input;
mod ingress_fuzz;
mod ingress_shutdown;
mod ingress_slow;
mod ingress_sqs;

mod embedded_queue;
mod sqs_queue;
mod store;
mod store_pool;
mod store_prune;
mod store_upgrade;
mod write_gate;

mod ecs;
mod fake_github_checks;
mod github;
mod github_apps;
mod github_resilience;
mod redelivery;

mod worker;
mod worker_dry_run;

mod dlq;

mod chaos;
mod cli;
mod observability;
mod reload;
