//! A running simulated world: the GitHub and ECS APIs on loopback ports, the clock's ticks,
//! and the webhook deliveries.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::ecs_api::{self, EcsApi};
use crate::faults::Faults;
use crate::github_api::{self, GitHubApi};
use crate::model::Model;
use crate::settings::Settings;
use crate::webhooks::Sender;

/// How often simulated time moves the world on (real time).
const TICK: Duration = Duration::from_millis(5);

pub struct World {
    pub model: Arc<Mutex<Model>>,
    /// The GitHub API root, e.g. `http://127.0.0.1:40123`.
    pub github_url: String,
    /// The ECS endpoint.
    pub ecs_url: String,
    pub github: Arc<GitHubApi>,
    pub ecs: Arc<EcsApi>,
    pub webhooks: Arc<Sender>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for World {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn serve(app: Router) -> anyhow::Result<(String, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let url = format!("http://{}", listener.local_addr()?);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, task))
}

impl World {
    pub async fn start(settings: Settings) -> anyhow::Result<Self> {
        let clock = Clock::start(settings.time_scale);
        let seed = settings.seed;
        let webhooks = Sender::new(
            &settings.webhook_secret,
            settings.webhooks.clone(),
            &settings.apps,
            seed,
        )?;
        let (github_faults, ecs_faults) = (
            Faults::new(seed, settings.github_faults.clone()),
            Faults::new(seed.rotate_left(17), settings.ecs_faults.clone()),
        );
        let model = Arc::new(Mutex::new(Model::new(settings, clock)));
        let github = Arc::new(GitHubApi::new(
            model.clone(),
            github_faults,
            webhooks.clone(),
        )?);
        let ecs = Arc::new(EcsApi::new(model.clone(), ecs_faults));
        let (github_url, github_task) = serve(
            Router::new()
                .fallback(github_api::handle)
                .with_state(github.clone()),
        )
        .await?;
        let (ecs_url, ecs_task) = serve(
            Router::new()
                .fallback(ecs_api::handle)
                .with_state(ecs.clone()),
        )
        .await?;
        let ticker = {
            let (model, webhooks) = (model.clone(), webhooks.clone());
            tokio::spawn(async move {
                let mut interval = tokio::time::interval(TICK);
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                loop {
                    interval.tick().await;
                    let due = model.lock().unwrap().tick();
                    for hook in due {
                        webhooks.send(hook);
                    }
                }
            })
        };
        Ok(Self {
            model,
            github_url,
            ecs_url,
            github,
            ecs,
            webhooks,
            tasks: vec![github_task, ecs_task, ticker],
        })
    }

    /// A new queued job; `poison` for one whose installation does not exist.
    pub fn queue_job(&self, poison: bool) -> u64 {
        self.model.lock().unwrap().queue_job(poison)
    }

    /// Reads the model.
    pub fn with<R>(&self, f: impl FnOnce(&Model) -> R) -> R {
        f(&self.model.lock().unwrap())
    }
}
