//! dockhand as a GitHub App: App JWT auth, cached installation tokens, just-in-time runner
//! configs, and clean-up of runner registrations.
//!
//! Every call goes through octocrab's raw request API so the answer's status and headers
//! are ours to classify ([`GitHubError`]); octocrab's own retries are off, because the
//! worker retries transient failures through the queue.

mod apps;
mod budget;
mod deliveries;
mod error;
mod installations;
mod listing;
mod primary;
mod request;
mod runner_groups;
mod runs;
mod tokens;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use octocrab::Octocrab;
use octocrab::models::AppId;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

pub use self::apps::{GitHubApp, JitReservation};
use self::budget::{Budget, Permit};
pub use self::deliveries::{DeliveryPage, HookDelivery};
pub use self::error::GitHubError;
use self::installations::CallError;
use self::request::{Endpoint, Method, segment};
pub use self::runs::WorkflowRunView;
use self::tokens::Tokens;
use crate::config::GitHubSettings;
use crate::domain::{InstallationId, JobId, RunnerId};

/// The id of every organization's and repository's default runner group.
pub const DEFAULT_RUNNER_GROUP_ID: u64 = 1;
/// Page size for runner and runner-group listings (GitHub's maximum).
const PER_PAGE: usize = 100;
/// Stops paging through a listing on a misbehaving server: 100 pages of 100.
const MAX_PAGES: usize = 100;

/// Where a runner registers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RunnerTarget {
    /// An organization: the runner serves any of its repositories its group allows.
    Org(String),
    /// One repository.
    Repo { owner: String, repo: String },
}

impl RunnerTarget {
    /// Where a pool with this scope registers the runners of jobs from `repo`
    /// (`owner/name`).
    pub fn for_repo(scope: crate::config::RunnerScopeKind, repo: &str) -> Self {
        let (owner, name) = repo.split_once('/').unwrap_or((repo, repo));
        match scope {
            crate::config::RunnerScopeKind::Org => Self::Org(owner.to_string()),
            crate::config::RunnerScopeKind::Repo => Self::Repo {
                owner: owner.to_string(),
                repo: name.to_string(),
            },
        }
    }

    /// The API path of the target's runner endpoints' parent, e.g. `/orgs/acme`.
    fn path(&self) -> String {
        match self {
            Self::Org(org) => format!("/orgs/{}", segment(org)),
            Self::Repo { owner, repo } => format!("/repos/{}/{}", segment(owner), segment(repo)),
        }
    }
}

impl fmt::Display for RunnerTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Org(org) => write!(f, "org {org}"),
            Self::Repo { owner, repo } => write!(f, "repo {owner}/{repo}"),
        }
    }
}

/// What to register a just-in-time runner as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JitRequest {
    /// The runner's name: unique per target (GitHub answers 409 otherwise).
    pub name: String,
    /// The runner group's name, resolved to its id for an organization (and cached).
    /// Ignored for a repository, whose runners always join the default group.
    pub runner_group: String,
    pub labels: Vec<String>,
    pub work_folder: String,
}

/// A just-in-time runner config: hand `encoded` to exactly one runner, which registers
/// with it and serves one job.
#[derive(Debug, Clone)]
pub struct JitConfig {
    pub runner_id: RunnerId,
    /// The App that registered the runner, and as which of its installations: clean-up
    /// calls go to them.
    pub app_id: u64,
    pub installation: InstallationId,
    /// The runner's credentials; `Debug` shows it redacted.
    pub encoded: SecretString,
}

/// A runner GitHub has registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredRunner {
    pub id: RunnerId,
    pub name: String,
    pub busy: bool,
    /// `online` or `offline`, as GitHub says.
    pub status: String,
}

/// A workflow job as GitHub answers it: the fields `jobs show --live` compares.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct WorkflowJobView {
    /// `queued`, `in_progress`, `completed`, `waiting`, ...
    pub status: String,
    pub conclusion: Option<String>,
    pub runner_name: Option<String>,
    #[serde(default)]
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default)]
    pub completed_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The run attempt the job belongs to (a re-run's jobs are new jobs of a new attempt).
    #[serde(default)]
    pub run_attempt: Option<u64>,
}

/// One GitHub App: cheap to clone, all clones sharing one set of caches (tokens per
/// installation, runner-group ids, installation lookups) and one budget.
#[derive(Clone)]
struct AppClient {
    inner: Arc<Inner>,
}

struct Inner {
    /// Authenticated as the App (a fresh JWT per call).
    app: Octocrab,
    /// No credentials of its own: installation calls carry their token in the request.
    api: Octocrab,
    app_id: u64,
    api_url: String,
    timeout: Duration,
    tokens: Tokens,
    budget: Budget,
    runner_groups: Mutex<HashMap<(String, String), u64>>,
    installations: Mutex<HashMap<RunnerTarget, InstallationId>>,
}

impl fmt::Debug for AppClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppClient")
            .field("app_id", &self.inner.app_id)
            .field("api_url", &self.inner.api_url)
            .field("installations", &self.inner.tokens.len())
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct JitAnswer {
    runner: JitRunner,
    encoded_jit_config: SecretString,
}

#[derive(Deserialize)]
struct JitRunner {
    id: u64,
}

#[derive(Deserialize)]
struct RunnerPage {
    total_count: usize,
    runners: Vec<RunnerEntry>,
}

#[derive(Deserialize)]
struct RunnerEntry {
    id: u64,
    name: String,
    busy: bool,
    status: String,
}

impl From<RunnerEntry> for RegisteredRunner {
    fn from(runner: RunnerEntry) -> Self {
        Self {
            id: RunnerId(runner.id),
            name: runner.name,
            busy: runner.busy,
            status: runner.status,
        }
    }
}

impl AppClient {
    /// The client of App `app_id` signing with `pem`: proves the key can sign a JWT, and
    /// points octocrab at `api_url` with `request_timeout`. Errors name the setting at fault
    /// (`key_setting` for the key).
    fn new(
        settings: &GitHubSettings,
        app_id: u64,
        pem: &SecretString,
        key_setting: &str,
    ) -> anyhow::Result<Self> {
        let key = octocrab::EncodingKey::from_rsa_pem(pem.expose_secret().as_bytes())
            .with_context(|| format!("{key_setting}: not an RSA private key in PEM form"))?;
        octocrab::auth::create_jwt(AppId(app_id), &key)
            .with_context(|| format!("{key_setting}: cannot sign a JWT with this key"))?;
        let timeout = settings.request_timeout;
        let builder = || {
            anyhow::Ok(
                Octocrab::builder()
                    .base_uri(settings.api_url.as_str())
                    .context("github.api_url: not a valid URL")?
                    // GitHub's docs ask for this media type; octocrab sends
                    // X-GitHub-Api-Version itself.
                    .add_header(
                        http::header::ACCEPT,
                        "application/vnd.github+json".to_string(),
                    )
                    // Only a connect timeout: each call is bounded by `request_timeout`
                    // as a whole (request::send). hyper-timeout's read timeout would start
                    // its clock when a pooled connection goes idle, and fail a later call on
                    // it early, however fast GitHub answers that call.
                    .set_connect_timeout(Some(timeout)),
            )
        };
        let app = builder()?
            .app(AppId(app_id), key)
            .build()
            .context("building the GitHub client")?;
        let api = builder()?.build().context("building the GitHub client")?;
        Ok(Self {
            inner: Arc::new(Inner {
                app,
                api,
                app_id,
                api_url: settings.api_url.clone(),
                timeout,
                tokens: Tokens::default(),
                budget: Budget::new(app_id, &settings.limits),
                runner_groups: Mutex::new(HashMap::new()),
                installations: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The App's id.
    fn id(&self) -> u64 {
        self.inner.app_id
    }

    /// The App's budget within GitHub's rate limits.
    fn budget(&self) -> &Budget {
        &self.inner.budget
    }

    /// Registers a just-in-time runner on `target` and returns its config, drawing on the
    /// budget room `permit` holds. For an organization the runner group's id is looked up by
    /// name on first use and cached; an unknown group is `NotFound` (permanent: fix the
    /// pool's `runner_group`).
    #[tracing::instrument(skip_all, fields(github.app = self.inner.app_id, github.installation = %installation, github.target = %target, runner.name = %request.name))]
    async fn generate_jit_config(
        &self,
        installation: InstallationId,
        target: &RunnerTarget,
        request: &JitRequest,
        permit: Permit,
    ) -> Result<JitConfig, GitHubError> {
        let runner_group_id = match target {
            RunnerTarget::Org(org) => {
                self.runner_group_id(installation, org, &request.runner_group)
                    .await?
            }
            RunnerTarget::Repo { .. } => DEFAULT_RUNNER_GROUP_ID,
        };
        let body = serde_json::json!({
            "name": request.name,
            "runner_group_id": runner_group_id,
            "labels": request.labels,
            "work_folder": request.work_folder,
        });
        let path = format!("{}/actions/runners/generate-jitconfig", target.path());
        let answer = self
            .as_installation(
                installation,
                target,
                (Endpoint::JitConfig, Method::Post(&body), &path),
                Some(permit),
            )
            .await;
        if let (Err(CallError::GitHub(GitHubError::NotFound)), RunnerTarget::Org(org)) =
            (&answer, target)
        {
            // The group may have been deleted since it was cached: look it up afresh
            // next time.
            self.lock_groups()
                .remove(&(org.clone(), request.runner_group.clone()));
        }
        let JitAnswer {
            runner,
            encoded_jit_config,
        } = answer?.json()?;
        Ok(JitConfig {
            runner_id: RunnerId(runner.id),
            app_id: self.inner.app_id,
            installation,
            encoded: encoded_jit_config,
        })
    }

    /// The runner registered on `target` under exactly `name`, if any. Asked for by
    /// `?name=`; older GitHub Enterprise Server ignores that filter and answers every
    /// runner, so an answer holding other names is paged through to the end.
    #[tracing::instrument(skip_all, fields(github.installation = %installation, github.target = %target, runner.name = %name))]
    pub async fn find_runner(
        &self,
        installation: InstallationId,
        target: &RunnerTarget,
        name: &str,
    ) -> Result<Option<RegisteredRunner>, GitHubError> {
        let mut seen = 0;
        for page in 1..=MAX_PAGES {
            let path = runner_list_path(target, name, page);
            let answer: RunnerPage = self
                .as_installation(
                    installation,
                    target,
                    (Endpoint::ListRunners, Method::Get, &path),
                    None,
                )
                .await?
                .json()?;
            let filtered = page == 1 && answer.runners.iter().all(|r| r.name == name);
            seen += answer.runners.len();
            let last = filtered || answer.runners.len() < PER_PAGE || seen >= answer.total_count;
            if let Some(runner) = answer.runners.into_iter().find(|r| r.name == name) {
                return Ok(Some(runner.into()));
            }
            if last {
                return Ok(None);
            }
            if page == 1 {
                tracing::debug!("GitHub ignored the runner list's name filter; paging through it");
            }
        }
        tracing::warn!(
            pages = MAX_PAGES,
            "gave up looking for the runner after as many pages of runners"
        );
        Ok(None)
    }

    /// Removes a runner's registration. The runner's 404 counts as success: it is already
    /// gone (an installation that is gone is `NotFound`: the registration may well be
    /// there). A busy runner cannot be removed (GitHub answers 422: `Validation`).
    #[tracing::instrument(skip_all, fields(github.installation = %installation, github.target = %target, runner.id = %runner))]
    pub async fn delete_runner(
        &self,
        installation: InstallationId,
        target: &RunnerTarget,
        runner: RunnerId,
    ) -> Result<(), GitHubError> {
        let path = format!("{}/actions/runners/{runner}", target.path());
        match self
            .as_installation(
                installation,
                target,
                (Endpoint::DeleteRunner, Method::Delete, &path),
                None,
            )
            .await
        {
            Ok(_) | Err(CallError::GitHub(GitHubError::NotFound)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// A workflow job as GitHub sees it now (`GET /repos/{owner}/{repo}/actions/jobs/{id}`),
    /// for `dockhand jobs show --live`.
    #[tracing::instrument(skip_all, fields(github.installation = %installation, job.id = %job))]
    pub async fn workflow_job(
        &self,
        installation: InstallationId,
        owner: &str,
        repo: &str,
        job: JobId,
    ) -> Result<WorkflowJobView, GitHubError> {
        let target = RunnerTarget::Repo {
            owner: owner.to_string(),
            repo: repo.to_string(),
        };
        let path = format!("{}/actions/jobs/{job}", target.path());
        self.as_installation(
            installation,
            &target,
            (Endpoint::WorkflowJob, Method::Get, &path),
            None,
        )
        .await?
        .json()
    }

    fn lock_groups(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), u64>> {
        self.inner
            .runner_groups
            .lock()
            .expect("runner group cache lock")
    }
}

/// `GET` this to list `target`'s runners, asking for those called `name`: the first page
/// as GitHub documents it, later ones (where the filter is ignored) by number.
fn runner_list_path(target: &RunnerTarget, name: &str, page: usize) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("name", name)
        .append_pair("per_page", &PER_PAGE.to_string());
    if page > 1 {
        query.append_pair("page", &page.to_string());
    }
    format!("{}/actions/runners?{}", target.path(), query.finish())
}
