//! A fake GitHub REST API for the App endpoints dockhand calls. It checks what it is sent
//! the way GitHub would, for one GitHub App or several installed on the same accounts:
//! - `apps`: an App's JWT must name it and be signed with its own key; each App has its own
//!   installation on each account, minted only by that App's JWT, and an installation token
//!   reaches only its own account. Apps can be uninstalled and reinstalled.
//! - `limits`: rate-limit headers per installation (and per App for JWT calls), failures
//!   queued per endpoint (for any caller or one App's), answers delayed per endpoint.
//! - `runners`: runner groups, JIT registration (bodies validated), listing (optionally
//!   ignoring `?name=` like older GitHub Enterprise Server) and deletion. Runners belong to
//!   the account, so every App installed there sees them.
//! - `runs`: workflow jobs and runs, and re-running a run's failed jobs.
//! - `hooks`: each App's webhook and delivery log, and redeliveries.
//! - `routes`: parsing a request, recording it, and dispatching it.
//!
//! `client` sends requests straight to the fake, for checking the fake itself.

mod apps;
pub mod client;
mod hooks;
mod limits;
mod routes;
mod runners;
mod runs;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::http::StatusCode;
use dockhand::config::github::GitHubAppSettings;
use dockhand::config::{GitHubSettings, SecretSource};
use serde_json::{Value, json};

use apps::App;
pub use limits::Failure;
use limits::Scope;
pub use runners::FakeRunner;

/// The endpoints the fake serves (and counts, and can be told to fail).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `POST /app/installations/{id}/access_tokens`
    InstallationToken,
    /// `POST /orgs/{org}/actions/runners/generate-jitconfig` (or the repo variant)
    JitConfig,
    /// `GET /orgs/{org}/actions/runner-groups`
    RunnerGroups,
    /// `GET /orgs/{org}/actions/runners` (or the repo variant)
    ListRunners,
    /// `DELETE /orgs/{org}/actions/runners/{id}` (or the repo variant)
    DeleteRunner,
    /// `GET /orgs/{org}/installation` or `/repos/{owner}/{repo}/installation`, and
    /// `GET /app/installations/{id}`
    Installation,
    /// `GET /repos/{owner}/{repo}/actions/jobs/{job_id}`
    WorkflowJob,
    /// `GET /repos/{owner}/{repo}/actions/runs/{run_id}`
    WorkflowRun,
    /// `POST /repos/{owner}/{repo}/actions/runs/{run_id}/rerun-failed-jobs`
    RerunFailedJobs,
    /// `GET /app/hook/deliveries`
    HookDeliveries,
    /// `POST /app/hook/deliveries/{delivery_id}/attempts`
    Redeliver,
}

/// One request as the fake received it.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// The JSON body; `None` when empty (or not JSON, which is answered 400).
    pub body: Option<Value>,
    pub auth: Auth,
    /// The App the credentials belong to: the JWT's App (named by `iss` and signed with
    /// that App's key), or the App owning the installation token; `None` otherwise.
    pub app: Option<u64>,
}

/// Who a request authenticated as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// A JWT signed with a trusted App key, unexpired, living at most 10 minutes. Only
    /// when `iss` is the id of the App whose key signed it does it act as that App.
    AppJwt { iss: String },
    /// A live token the fake minted for this installation.
    InstallationToken { installation: u64 },
    /// No credentials, or ones the fake does not accept.
    None,
}

/// A running fake GitHub; stops when dropped.
pub struct FakeGitHub {
    /// The API root, e.g. `http://127.0.0.1:40123`.
    pub url: String,
    state: Arc<Mutex<FakeState>>,
    server: tokio::task::JoinHandle<()>,
}

struct FakeState {
    /// The API root, as `url` of [`FakeGitHub`].
    url: String,
    /// The Apps' webhooks and delivery logs.
    hooks: hooks::Hooks,
    /// The trusted Apps, in the order given to [`FakeGitHub::start_apps`].
    apps: Vec<App>,
    /// Which App each known installation belongs to.
    installations: HashMap<u64, u64>,
    /// Installations deleted by an uninstall: minting for them answers 404.
    uninstalled: HashSet<u64>,
    /// Minted installation tokens: their installation and expiry.
    tokens: HashMap<String, (u64, SystemTime)>,
    token_lifetime: Duration,
    requests: Vec<(Option<Endpoint>, Recorded)>,
    /// Answers queued for the next request to an endpoint, from any caller.
    failures: HashMap<Endpoint, VecDeque<Failure>>,
    /// Answers queued for the next request to an endpoint with one App's credentials.
    app_failures: HashMap<(u64, Endpoint), VecDeque<Failure>>,
    /// How long each answer from an endpoint is held back.
    delays: HashMap<Endpoint, Duration>,
    /// Calls left before the next one, per credential.
    rate: HashMap<Scope, u64>,
    rate_reset: u64,
    /// Runner groups per org (lower-cased), besides "Default" = 1.
    groups: HashMap<String, Vec<(u64, String)>>,
    runners: Vec<FakeRunner>,
    next_runner_id: u64,
    /// Older GitHub Enterprise Server: the runner list ignores `?name=`.
    ignore_runner_name_filter: bool,
    /// Workflow jobs by id: their repository (`owner/name`, lower-cased) and the job as
    /// `GET .../actions/jobs/{id}` answers it.
    jobs: HashMap<u64, (String, Value)>,
    /// Workflow runs by id, with their repository (`owner/name`, lower-cased).
    runs: HashMap<u64, (String, runs::Run)>,
}

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn epoch_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs()
}

impl FakeGitHub {
    /// Starts the fake on a free loopback port, trusting one App: `app_id`, whose key is the
    /// fixture `github-app-test-key`.
    pub async fn start(app_id: u64) -> Self {
        Self::start_apps(&[app_id]).await
    }

    /// Starts the fake trusting several Apps (at most 2), each installed on every account:
    /// the first keyed by the fixture `github-app-test-key`, with installations from 7001;
    /// the second by `github-app-second-key`, with installations from 8001.
    pub async fn start_apps(app_ids: &[u64]) -> Self {
        let apps = app_ids
            .iter()
            .enumerate()
            .map(|(index, id)| App::new(index, *id))
            .collect();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(FakeState {
            url: url.clone(),
            hooks: hooks::Hooks::default(),
            apps,
            installations: HashMap::new(),
            uninstalled: HashSet::new(),
            tokens: HashMap::new(),
            token_lifetime: Duration::from_secs(3600),
            requests: Vec::new(),
            failures: HashMap::new(),
            app_failures: HashMap::new(),
            delays: HashMap::new(),
            rate: HashMap::new(),
            rate_reset: epoch_secs(SystemTime::now()) + 3600,
            groups: HashMap::new(),
            runners: Vec::new(),
            next_runner_id: runners::FIRST_RUNNER_ID,
            ignore_runner_name_filter: false,
            jobs: HashMap::new(),
            runs: HashMap::new(),
        }));
        let app = Router::new()
            .fallback(routes::handle)
            .with_state(state.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { url, state, server }
    }

    /// `[github]` settings pointing at this fake with the Apps' fixture private keys: the
    /// single-App form (`app_id`, `private_key`) for one App, `[[github.app]]` for several.
    pub fn settings(&self) -> GitHubSettings {
        let state = self.lock();
        let key = |app: &App| SecretSource {
            file: Some(fixture(&app.private_key)),
            ..SecretSource::default()
        };
        match state.apps.as_slice() {
            [app] => GitHubSettings {
                api_url: self.url.clone(),
                app_id: Some(app.id),
                private_key: Some(key(app)),
                request_timeout: Duration::from_secs(5),
                ..GitHubSettings::default()
            },
            apps => GitHubSettings {
                api_url: self.url.clone(),
                apps: apps
                    .iter()
                    .map(|app| GitHubAppSettings {
                        id: app.id,
                        private_key: key(app),
                    })
                    .collect(),
                request_timeout: Duration::from_secs(5),
                ..GitHubSettings::default()
            },
        }
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock()
            .requests
            .iter()
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// Requests received for one endpoint, in order.
    pub fn requests_to(&self, endpoint: Endpoint) -> Vec<Recorded> {
        self.lock()
            .requests
            .iter()
            .filter(|(e, _)| *e == Some(endpoint))
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// Requests received for one endpoint with one App's credentials, in order.
    pub fn requests_by_app(&self, app: u64, endpoint: Endpoint) -> Vec<Recorded> {
        self.requests_to(endpoint)
            .into_iter()
            .filter(|r| r.app == Some(app))
            .collect()
    }

    /// How many requests an endpoint received (answered or not).
    pub fn count(&self, endpoint: Endpoint) -> usize {
        self.requests_to(endpoint).len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap()
    }
}

impl Drop for FakeGitHub {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A status and JSON body, before the rate-limit headers are added.
type Answer = (StatusCode, Value);

fn message(status: StatusCode, message: &str) -> Answer {
    (status, json!({ "message": message }))
}

fn unauthorized() -> Answer {
    message(StatusCode::UNAUTHORIZED, "Bad credentials")
}

fn not_found() -> Answer {
    message(StatusCode::NOT_FOUND, "Not Found")
}

fn invalid(what: &str) -> Answer {
    message(StatusCode::UNPROCESSABLE_ENTITY, what)
}
