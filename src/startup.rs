//! Building the processes from settings, and running them until a shutdown signal.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState};
use crate::config::{SecretResolver, Settings};
use crate::ingress::{self, IngressState, signature::WebhookKeys};
use crate::metrics;
use crate::pool::Pools;
use crate::queue::{self, Queue, batch::BatchSender};

/// The ingress with both listeners bound, so its addresses are known before it runs (tests
/// bind port 0).
pub struct IngressServer {
    webhook: TcpListener,
    admin: TcpListener,
    webhook_router: Router,
    admin_router: Router,
    batcher: JoinHandle<()>,
    queue: Arc<dyn Queue>,
    grace: Duration,
}

impl IngressServer {
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let metrics = metrics::install();
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
        let queue = queue::connect(&settings.queue, &settings.aws).await?;
        let (sender, batcher) = BatchSender::spawn(queue.clone(), &settings.queue.batch);
        let state = IngressState::new(
            &settings.webhook,
            WebhookKeys::new(&secrets),
            Pools::from_settings(&settings.pools),
            sender,
        );
        let webhook = TcpListener::bind(settings.server.listen)
            .await
            .with_context(|| format!("binding server.listen {}", settings.server.listen))?;
        let admin = TcpListener::bind(settings.admin.listen)
            .await
            .with_context(|| format!("binding admin.listen {}", settings.admin.listen))?;
        admin::spawn_upkeep(metrics.clone());
        Ok(Self {
            webhook,
            admin,
            webhook_router: ingress::router(&settings.server.path, state),
            admin_router: admin::router(AdminState {
                metrics,
                queue: queue.clone(),
            }),
            batcher,
            queue,
            grace: settings.server.shutdown_grace,
        })
    }

    pub fn webhook_addr(&self) -> SocketAddr {
        self.webhook
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The queue the ingress sends to.
    pub fn queue(&self) -> Arc<dyn Queue> {
        self.queue.clone()
    }

    /// Serves until `shutdown` is cancelled, then stops accepting, lets in-flight requests
    /// and their queue sends finish (within `server.shutdown_grace`), and returns.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(
            webhook = %self.webhook_addr(), admin = %self.admin_addr(), "ingress listening"
        );
        let admin_stop = CancellationToken::new();
        let admin = tokio::spawn(
            axum::serve(self.admin, self.admin_router)
                .with_graceful_shutdown(admin_stop.clone().cancelled_owned())
                .into_future(),
        );
        let server = axum::serve(self.webhook, self.webhook_router)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned());
        let grace = self.grace;
        let deadline = async {
            shutdown.cancelled().await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            served = server => served.context("serving webhooks")?,
            () = deadline => tracing::warn!("requests still open after the shutdown grace period"),
        }
        // Every request handler has returned, so nothing holds a sender: the batcher sends
        // what it has and stops.
        if tokio::time::timeout(grace, self.batcher).await.is_err() {
            tracing::warn!("queue sends still in flight after the shutdown grace period");
        }
        admin_stop.cancel();
        admin
            .await
            .context("admin server task")?
            .context("serving admin")?;
        tracing::info!("ingress stopped");
        Ok(())
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
