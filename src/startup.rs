//! Building the processes from settings, and running them until a shutdown signal.
//!
//! One [`Application`] runs the roles it is given: the webhook ingress, the worker, or
//! both (`dockhand serve`), plus the admin endpoints. When one role stops with an error
//! the others are stopped too, and the error says which one it was.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState};
use crate::config::{ConfigSource, SecretResolver, Settings};
use crate::ecs::Launcher;
use crate::github::GitHubApp;
use crate::ingress::{self, IngressState, signature::WebhookKeys};
use crate::listener::{self, Limits, ListenerName};
use crate::metrics;
use crate::pool::{LivePools, Pools};
use crate::queue::{self, Queue, batch::BatchSender};
use crate::reload::Reloader;
use crate::store::Store;
use crate::worker::{Launchers, Worker};

/// The roles a process runs (their home is `config`, which checks what each needs); here
/// too, beside the [`Application`] that runs them.
pub use crate::config::Roles;

/// A process with its listeners bound, so addresses are known before it runs (tests bind
/// port 0).
pub struct Application {
    ingress: Option<Ingress>,
    worker: Option<Worker>,
    admin: TcpListener,
    admin_router: Router,
    admin_limits: Limits,
    queue: Arc<dyn Queue>,
    receive_wait: Duration,
    reloader: Option<(Reloader, Duration)>,
    /// The lifecycle reconciler, on a worker that launches.
    reconciler: Option<crate::lifecycle::Reconciler>,
    /// `store.retention` and `store.prune_interval`, for the worker's prune task.
    prune: (Duration, Duration),
}

/// Where a process's configuration came from, to read again while it runs.
#[derive(Debug, Clone)]
pub struct Reloading {
    pub source: ConfigSource,
    /// `--dry-run` from the command line, kept over whatever the source says.
    pub dry_run: bool,
}

struct Ingress {
    listener: TcpListener,
    limits: Limits,
    router: Router,
    batcher: JoinHandle<()>,
    grace: Duration,
}

impl Application {
    /// A process whose configuration stays as given.
    pub async fn build(settings: &Settings, roles: Roles) -> anyhow::Result<Self> {
        Self::build_reloading(settings, roles, None).await
    }

    /// A process that, with `reloading`, reads its configuration's source again every
    /// `reload.interval` and applies pool changes while it runs.
    pub async fn build_reloading(
        settings: &Settings,
        roles: Roles,
        reloading: Option<Reloading>,
    ) -> anyhow::Result<Self> {
        settings.validate_for(roles)?;
        let metrics = metrics::install();
        let queue = queue::connect(&settings.queue, &settings.aws).await?;
        let (updater, pools) = LivePools::new(Pools::from_settings(&settings.pools));
        let ingress = match roles.ingress {
            true => Some(Ingress::build(settings, queue.clone(), pools.clone()).await?),
            false => None,
        };
        let worker = match roles.worker {
            true => Some(build_worker_with(settings, queue.clone(), pools).await?),
            false => None,
        };
        let (lifecycle, lifecycle_rx) = tokio::sync::watch::channel(settings.lifecycle.clone());
        let reconciler = worker.as_ref().and_then(|w| w.reconciler(lifecycle_rx));
        if let Some(reconciler) = &reconciler
            && settings.redelivery.enabled
        {
            reconciler.redeliver_with(settings.redelivery.clone());
        }
        let interval = settings.reload.interval;
        let reloader = reloading
            .filter(|r| !interval.is_zero() && r.source.can_reload())
            .map(|r| {
                tracing::info!(source = %r.source, interval_s = interval.as_secs(), "reloading the configuration");
                let reloader = Reloader::new(
                    r.source,
                    roles,
                    r.dry_run,
                    settings.clone(),
                    updater,
                    lifecycle,
                );
                (reloader, interval)
            });
        let admin = TcpListener::bind(settings.admin.listen)
            .await
            .with_context(|| format!("binding admin.listen {}", settings.admin.listen))?;
        admin::spawn_upkeep(metrics.clone());
        let token = match &settings.admin.token {
            Some(source) => Some(
                SecretResolver::new(&settings.aws)
                    .resolve(source)
                    .await
                    .context("admin.token")?,
            ),
            None => None,
        };
        let admin_router = admin::router(AdminState {
            metrics,
            queue: queue.clone(),
            store: worker.as_ref().map(|w| w.store().clone()),
            store_name: crate::inspect::store_name(&settings.store.url),
            token,
        });
        let admin_limits = Limits {
            header_timeout: settings.admin.header_timeout,
            body_timeout: settings.admin.body_timeout,
            max_connections: settings.admin.max_connections,
        };
        Ok(Self {
            ingress,
            worker,
            admin,
            admin_router,
            admin_limits,
            queue,
            receive_wait: settings.queue.receive_wait(),
            reloader,
            reconciler,
            prune: (settings.store.retention, settings.store.prune_interval),
        })
    }

    /// The webhook listener's address. Panics if the ingress role is off.
    pub fn webhook_addr(&self) -> SocketAddr {
        let ingress = self.ingress.as_ref().expect("the ingress role is on");
        ingress.listener.local_addr().expect("bound")
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr().expect("bound")
    }

    pub fn queue(&self) -> Arc<dyn Queue> {
        self.queue.clone()
    }

    pub fn worker(&self) -> Option<Worker> {
        self.worker.clone()
    }

    /// Runs every role until `shutdown` is cancelled (or one role fails, which stops the
    /// others), then shuts each down gracefully.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let admin_stop = CancellationToken::new();
        tracing::info!(admin = %self.admin_addr(), "admin listening");
        let reloader = self
            .reloader
            .map(|(reloader, interval)| tokio::spawn(reloader.run(interval, shutdown.clone())));
        let admin = tokio::spawn(listener::serve(
            self.admin,
            ListenerName::Admin,
            self.admin_limits,
            self.admin_router,
            admin_stop.clone(),
        ));
        let ingress = async {
            let Some(ingress) = self.ingress else {
                return Ok(());
            };
            let result = ingress.run_until_stopped(shutdown.clone()).await;
            if let Err(err) = &result {
                tracing::error!(
                    error = format!("{err:#}"),
                    "ingress stopped; stopping the rest"
                );
                shutdown.cancel();
            }
            result.context("ingress")
        };
        let worker = async {
            let Some(worker) = self.worker else {
                return Ok(());
            };
            let gauges = worker.spawn_gauges(shutdown.clone());
            let (retention, every) = self.prune;
            let pruning = worker.spawn_pruning(retention, every, shutdown.clone());
            let reconciling = self.reconciler.map(|r| r.spawn(shutdown.clone()));
            let result = worker
                .run_until_stopped(self.receive_wait, shutdown.clone())
                .await;
            gauges.abort();
            pruning.abort();
            if let Some(reconciling) = reconciling {
                // It gives up its lease on shutdown, for another process to lead at once.
                let _ = tokio::time::timeout(Duration::from_secs(5), reconciling).await;
            }
            if let Err(err) = &result {
                tracing::error!(
                    error = format!("{err:#}"),
                    "worker stopped; stopping the rest"
                );
                shutdown.cancel();
            }
            result.context("worker")
        };
        let (ingress, worker) = tokio::join!(ingress, worker);
        if let Some(reloader) = reloader {
            reloader.abort();
        }
        admin_stop.cancel();
        admin.await.context("admin server task")?;
        ingress?;
        worker?;
        tracing::info!("stopped");
        Ok(())
    }
}

impl Ingress {
    async fn build(
        settings: &Settings,
        queue: Arc<dyn Queue>,
        pools: LivePools,
    ) -> anyhow::Result<Self> {
        let resolver = SecretResolver::new(&settings.aws);
        let mut secrets = Vec::with_capacity(settings.webhook.secrets.len());
        for (i, source) in settings.webhook.secrets.iter().enumerate() {
            secrets.push(
                resolver
                    .resolve(source)
                    .await
                    .with_context(|| format!("webhook.secrets[{i}]"))?,
            );
        }
        let (sender, batcher) = BatchSender::spawn(queue, &settings.queue.batch);
        let state = IngressState::new(&settings.webhook, WebhookKeys::new(&secrets), pools, sender);
        let listener = TcpListener::bind(settings.server.listen)
            .await
            .with_context(|| format!("binding server.listen {}", settings.server.listen))?;
        Ok(Self {
            listener,
            limits: Limits {
                header_timeout: settings.server.header_timeout,
                body_timeout: settings.server.body_timeout,
                max_connections: settings.server.max_connections,
            },
            router: ingress::router(&settings.server.path, state),
            batcher,
            grace: settings.server.shutdown_grace,
        })
    }

    /// Serves until `shutdown`, then stops accepting, lets in-flight requests and their
    /// queue sends finish (within `server.shutdown_grace`), and returns. Requests still
    /// open at the end of the grace period are dropped unanswered.
    async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(webhook = %self.listener.local_addr()?, "ingress listening");
        let server = listener::serve(
            self.listener,
            ListenerName::Webhook,
            self.limits,
            self.router,
            shutdown.clone(),
        );
        let grace = self.grace;
        let deadline = async {
            shutdown.cancelled().await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            () = server => {}
            () = deadline => tracing::warn!("requests still open after the shutdown grace period"),
        }
        // Every request handler has returned, so nothing holds a sender: the batcher sends
        // what it has and stops.
        if tokio::time::timeout(grace, self.batcher).await.is_err() {
            tracing::warn!("queue sends still in flight after the shutdown grace period");
        }
        tracing::info!("ingress stopped");
        Ok(())
    }
}

/// Builds a worker on `queue` from the settings: the store, and (unless in dry-run) the
/// GitHub App and the ECS launcher. Its pools stay as configured.
pub async fn build_worker(settings: &Settings, queue: Arc<dyn Queue>) -> anyhow::Result<Worker> {
    let pools = LivePools::fixed(Pools::from_settings(&settings.pools));
    build_worker_with(settings, queue, pools).await
}

/// Builds a worker that reads its pools from `pools`.
pub async fn build_worker_with(
    settings: &Settings,
    queue: Arc<dyn Queue>,
    pools: LivePools,
) -> anyhow::Result<Worker> {
    settings.validate_for(Roles::WORKER)?;
    let store = Store::connect(&settings.store).await?;
    let launchers = if settings.worker.dry_run {
        None
    } else {
        let github =
            GitHubApp::from_settings(&settings.github, &SecretResolver::new(&settings.aws))
                .await
                .context("setting up the GitHub App")?;
        let ecs = Launcher::with_pacing(settings.aws.ecs_client().await, &settings.aws.run_task);
        Some(Launchers { github, ecs })
    };
    Worker::new(
        queue,
        store,
        launchers,
        pools,
        settings.worker.clone(),
        settings.queue.visibility_timeout(),
        unknown_pool_grace(settings.reload.interval),
    )
    .await
    .context("finding the dead-letter queue")
}

/// How long a worker waits to learn a pool the ingress matched: two reload intervals (the
/// ingress's and its own), or a minute when reloading is off.
fn unknown_pool_grace(reload: Duration) -> Duration {
    if reload.is_zero() {
        Duration::from_secs(60)
    } else {
        reload * 2
    }
}

/// A token cancelled on SIGTERM or SIGINT.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let signal = wait_for_signal().await;
        tracing::info!(signal, "shutting down");
        cancel.cancel();
    });
    token
}

async fn wait_for_signal() -> &'static str {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}
