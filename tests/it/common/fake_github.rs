//! A fake GitHub REST API for the App endpoints dockhand calls. It checks what it is sent
//! the way GitHub would: App JWTs are verified against the fixture public key, only
//! installation tokens it minted are accepted (each bound to its installation, and an
//! installation to the first account it is used on), and JIT bodies are validated. Every
//! request is recorded, failures can be queued and answers delayed per endpoint, the runner
//! list can ignore `?name=` like older GitHub Enterprise Server, and the App can be
//! uninstalled from an account or reinstalled on it. Workflow runs can be read and their
//! failed jobs re-run (`fake_github/runs.rs`).

mod runs;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use dockhand::config::{GitHubSettings, SecretSource};
use dockhand::github::RunnerTarget;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};

const RATE_LIMIT: u64 = 5000;
/// GitHub refuses App JWTs that live longer than this.
const MAX_JWT_LIFETIME: u64 = 600;
const FIRST_RUNNER_ID: u64 = 1001;
const FIRST_INSTALLATION_ID: u64 = 7001;
/// The installation of an account the App was uninstalled from: no id is ever this.
const UNINSTALLED: u64 = 0;

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
    /// `GET /orgs/{org}/installation` or `/repos/{owner}/{repo}/installation`
    Installation,
    /// `GET /repos/{owner}/{repo}/actions/jobs/{job_id}`
    WorkflowJob,
    /// `GET /repos/{owner}/{repo}/actions/runs/{run_id}`
    WorkflowRun,
    /// `POST /repos/{owner}/{repo}/actions/runs/{run_id}/rerun-failed-jobs`
    RerunFailedJobs,
}

/// An answer to give the next request to an endpoint instead of the real one.
#[derive(Debug, Clone)]
pub enum Failure {
    /// This status, with a JSON `message` and the usual rate-limit headers.
    Status(u16),
    /// This status with this `message` (GitHub's own text, which dockhand may pass on).
    Message(u16, String),
    /// A primary rate limit: 403, `x-ratelimit-remaining: 0`, and `x-ratelimit-reset`
    /// this far in the future.
    RateLimited { reset_in: Duration },
    /// A secondary rate limit: 429 with `retry-after`.
    RetryAfter(Duration),
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
}

/// Who a request authenticated as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// A JWT signed with the fixture key, unexpired, living at most 10 minutes.
    AppJwt { iss: String },
    /// A live token the fake minted for this installation.
    InstallationToken { installation: u64 },
    /// No credentials, or ones the fake does not accept.
    None,
}

/// A registered self-hosted runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeRunner {
    pub id: u64,
    pub name: String,
    pub labels: Vec<String>,
    pub runner_group_id: u64,
    pub target: RunnerTarget,
    pub busy: bool,
    pub work_folder: String,
    pub encoded_jit_config: String,
}

/// A running fake GitHub; stops when dropped.
pub struct FakeGitHub {
    /// The API root, e.g. `http://127.0.0.1:40123`.
    pub url: String,
    app_id: u64,
    state: Arc<Mutex<FakeState>>,
    server: tokio::task::JoinHandle<()>,
}

struct FakeState {
    app_id: u64,
    key: DecodingKey,
    requests: Vec<(Option<Endpoint>, Recorded)>,
    failures: HashMap<Endpoint, VecDeque<Failure>>,
    /// How long each answer from an endpoint is held back.
    delays: HashMap<Endpoint, Duration>,
    /// Runner groups per org (lower-cased), besides "Default" = 1.
    groups: HashMap<String, Vec<(u64, String)>>,
    runners: Vec<FakeRunner>,
    next_runner_id: u64,
    tokens: HashMap<String, (u64, SystemTime)>,
    token_lifetime: Duration,
    /// Which installation each account (lower-cased) is, once known ([`UNINSTALLED`] after
    /// an uninstall).
    accounts: HashMap<String, u64>,
    next_installation: u64,
    /// Installations deleted by a reinstall: minting for them answers 404.
    uninstalled: HashSet<u64>,
    /// Older GitHub Enterprise Server: the runner list ignores `?name=`.
    ignore_runner_name_filter: bool,
    /// Calls left per credential ("app", or an installation id).
    rate: HashMap<String, u64>,
    rate_reset: u64,
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
    /// Starts the fake on a free loopback port, trusting JWTs for `app_id` signed with the
    /// fixture key.
    pub async fn start(app_id: u64) -> Self {
        let pem = std::fs::read(fixture("github-app-test-key.pub.pem")).expect("fixture key");
        let key = DecodingKey::from_rsa_pem(&pem).expect("a valid public key");
        let state = Arc::new(Mutex::new(FakeState {
            app_id,
            key,
            requests: Vec::new(),
            failures: HashMap::new(),
            delays: HashMap::new(),
            groups: HashMap::new(),
            runners: Vec::new(),
            next_runner_id: FIRST_RUNNER_ID,
            tokens: HashMap::new(),
            token_lifetime: Duration::from_secs(3600),
            accounts: HashMap::new(),
            next_installation: FIRST_INSTALLATION_ID,
            uninstalled: HashSet::new(),
            ignore_runner_name_filter: false,
            rate: HashMap::new(),
            rate_reset: epoch_secs(SystemTime::now()) + 3600,
            jobs: HashMap::new(),
            runs: HashMap::new(),
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new().fallback(handle).with_state(state.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            url,
            app_id,
            state,
            server,
        }
    }

    /// `[github]` settings pointing at this fake, with the fixture private key.
    pub fn settings(&self) -> GitHubSettings {
        GitHubSettings {
            api_url: self.url.clone(),
            app_id: Some(self.app_id),
            private_key: Some(SecretSource {
                file: Some(fixture("github-app-test-key.pem")),
                ..SecretSource::default()
            }),
            request_timeout: Duration::from_secs(5),
        }
    }

    /// Adds a runner group to an org (every org already has "Default" = 1).
    pub fn add_runner_group(&self, org: &str, name: &str, id: u64) {
        self.lock()
            .groups
            .entry(org.to_lowercase())
            .or_default()
            .push((id, name.to_string()));
    }

    /// Queues an answer for the next request to `endpoint` (first in, first out).
    pub fn fail_next(&self, endpoint: Endpoint, failure: Failure) {
        self.lock()
            .failures
            .entry(endpoint)
            .or_default()
            .push_back(failure);
    }

    /// Holds back every answer from `endpoint` by `delay` from now on (the request is
    /// recorded and served at once; only the answer waits).
    pub fn set_delay(&self, endpoint: Endpoint, delay: Duration) {
        self.lock().delays.insert(endpoint, delay);
    }

    /// Uninstalls the App from `account`, as an org owner would: the installation's tokens
    /// are revoked (401), minting for it answers 404, and so does the account's
    /// installation lookup, until [`FakeGitHub::reinstall`].
    pub fn uninstall(&self, account: &str) {
        let mut state = self.lock();
        let account = account.to_lowercase();
        let old = state.installation_of(&account);
        state.uninstalled.insert(old);
        state
            .tokens
            .retain(|_, (installation, _)| *installation != old);
        state.accounts.insert(account, UNINSTALLED);
    }

    /// Uninstalls the App from `account` and installs it again: the account gets a new
    /// installation id (returned), and the old one is gone as after
    /// [`FakeGitHub::uninstall`].
    pub fn reinstall(&self, account: &str) -> u64 {
        self.uninstall(account);
        let mut state = self.lock();
        let new = state.next_installation;
        state.next_installation += 1;
        state.accounts.insert(account.to_lowercase(), new);
        new
    }

    /// The App is installed on `account` as `installation`, as the account's webhooks will
    /// say (otherwise the account's first caller binds it).
    pub fn install_on(&self, account: &str, installation: u64) {
        self.lock()
            .accounts
            .insert(account.to_lowercase(), installation);
    }

    /// From now on the runner list ignores `?name=` and answers every runner, paged, as
    /// older GitHub Enterprise Server does.
    pub fn ignore_runner_name_filter(&self) {
        self.lock().ignore_runner_name_filter = true;
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

    /// How many requests an endpoint received (answered or not).
    pub fn count(&self, endpoint: Endpoint) -> usize {
        self.requests_to(endpoint).len()
    }

    /// The runners currently registered.
    pub fn runners(&self) -> Vec<FakeRunner> {
        self.lock().runners.clone()
    }

    /// Registers a runner as if an earlier launch had (a stale registration); returns its
    /// id.
    pub fn register_runner(&self, target: &RunnerTarget, name: &str, busy: bool) -> u64 {
        let mut state = self.lock();
        let id = state.next_runner_id;
        state.next_runner_id += 1;
        state.runners.push(FakeRunner {
            id,
            name: name.to_string(),
            labels: vec!["self-hosted".to_string()],
            runner_group_id: 1,
            target: target.clone(),
            busy,
            work_folder: "_work".to_string(),
            encoded_jit_config: format!("pre-registered-{id}"),
        });
        id
    }

    /// Forgets a runner, as GitHub does once an ephemeral runner has run its one job.
    pub fn forget_runner(&self, runner_id: u64) {
        self.lock().runners.retain(|r| r.id != runner_id);
    }

    /// Marks a runner busy (running a job) or idle.
    pub fn set_busy(&self, runner_id: u64, busy: bool) {
        let mut state = self.lock();
        let runner = state
            .runners
            .iter_mut()
            .find(|r| r.id == runner_id)
            .unwrap_or_else(|| panic!("no runner {runner_id} is registered"));
        runner.busy = busy;
    }

    /// Sets a workflow job as GitHub would answer it: its `status` (`queued`, `in_progress`,
    /// `completed`), `conclusion` and runner, in run `job_id * 10`, attempt 1.
    pub fn set_job(
        &self,
        repo: &str,
        job_id: u64,
        status: &str,
        conclusion: Option<&str>,
        runner_name: Option<&str>,
    ) {
        self.set_job_in_run(
            repo,
            job_id,
            job_id * 10,
            1,
            status,
            conclusion,
            runner_name,
        );
    }

    /// How long the installation tokens minted from now on live (an hour by default).
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.lock().token_lifetime = lifetime;
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

/// What a request is for, parsed from its method and path.
enum Route {
    Mint { installation: String },
    Installation { target: RunnerTarget },
    RunnerGroups { org: String },
    Jit { target: RunnerTarget },
    ListRunners { target: RunnerTarget },
    DeleteRunner { target: RunnerTarget, id: String },
    WorkflowJob { target: RunnerTarget, id: String },
    WorkflowRun { target: RunnerTarget, id: String },
    RerunFailedJobs { target: RunnerTarget, id: String },
}

impl Route {
    fn parse(method: &Method, path: &str) -> Option<(Endpoint, Route)> {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let (target, rest) = match segments.as_slice() {
            ["app", "installations", id, "access_tokens"] if method == Method::POST => {
                return Some((
                    Endpoint::InstallationToken,
                    Route::Mint {
                        installation: id.to_string(),
                    },
                ));
            }
            ["orgs", org, rest @ ..] => (RunnerTarget::Org(org.to_string()), rest),
            ["repos", owner, repo, rest @ ..] => (
                RunnerTarget::Repo {
                    owner: owner.to_string(),
                    repo: repo.to_string(),
                },
                rest,
            ),
            _ => return None,
        };
        let route = match (method, rest) {
            (&Method::GET, ["installation"]) => {
                (Endpoint::Installation, Route::Installation { target })
            }
            (&Method::GET, ["actions", "runner-groups"]) => match target {
                RunnerTarget::Org(org) => (Endpoint::RunnerGroups, Route::RunnerGroups { org }),
                RunnerTarget::Repo { .. } => return None,
            },
            (&Method::POST, ["actions", "runners", "generate-jitconfig"]) => {
                (Endpoint::JitConfig, Route::Jit { target })
            }
            (&Method::GET, ["actions", "runners"]) => {
                (Endpoint::ListRunners, Route::ListRunners { target })
            }
            (&Method::GET, ["actions", "jobs", id]) => match target {
                RunnerTarget::Repo { .. } => (
                    Endpoint::WorkflowJob,
                    Route::WorkflowJob {
                        target,
                        id: id.to_string(),
                    },
                ),
                RunnerTarget::Org(_) => return None,
            },
            (&Method::DELETE, ["actions", "runners", id]) => (
                Endpoint::DeleteRunner,
                Route::DeleteRunner {
                    target,
                    id: id.to_string(),
                },
            ),
            _ => return runs::route(method, target, rest),
        };
        Some(route)
    }
}

fn account(target: &RunnerTarget) -> String {
    match target {
        RunnerTarget::Org(org) => org.to_lowercase(),
        RunnerTarget::Repo { owner, .. } => owner.to_lowercase(),
    }
}

async fn handle(
    State(state): State<Arc<Mutex<FakeState>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (response, delay) = {
        let mut state = state.lock().unwrap();
        let delay = Route::parse(&method, uri.path())
            .and_then(|(endpoint, _)| state.delays.get(&endpoint).copied());
        (respond(&mut state, method, uri, headers, body), delay)
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    response
}

/// Records the request and answers it.
fn respond(
    state: &mut FakeState,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (json_body, body_ok) = if body.is_empty() {
        (None, true)
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(v) => (Some(v), true),
            Err(_) => (None, false),
        }
    };
    let auth = state.authenticate(&headers);
    let route = Route::parse(&method, uri.path());
    state.requests.push((
        route.as_ref().map(|(e, _)| *e),
        Recorded {
            method: method.to_string(),
            path: uri.path().to_string(),
            query: uri.query().map(str::to_string),
            body: json_body.clone(),
            auth: auth.clone(),
        },
    ));
    let scope = match &auth {
        Auth::AppJwt { .. } => "app".to_string(),
        Auth::InstallationToken { installation } => installation.to_string(),
        Auth::None => "anonymous".to_string(),
    };
    if !headers.contains_key("user-agent") {
        // GitHub refuses requests without one.
        return state.answer(
            &scope,
            StatusCode::FORBIDDEN,
            json!({"message": "Request forbidden: please make sure your request has a User-Agent header"}),
        );
    }
    if !accepts_github_json(&headers) {
        // GitHub's docs ask every REST call for this media type; dockhand must send it.
        return state.answer(
            &scope,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            json!({"message": "Unsupported 'Accept' header: send application/vnd.github+json"}),
        );
    }
    let Some((endpoint, route)) = route else {
        return state.answer(
            &scope,
            StatusCode::NOT_FOUND,
            json!({"message": "Not Found"}),
        );
    };
    if let Some(failure) = state
        .failures
        .get_mut(&endpoint)
        .and_then(VecDeque::pop_front)
    {
        return state.fail(&scope, failure);
    }
    if !body_ok {
        return state.answer(
            &scope,
            StatusCode::BAD_REQUEST,
            json!({"message": "Problems parsing JSON"}),
        );
    }
    let (status, answer) = state.serve(route, &auth, uri.query(), json_body);
    state.answer(&scope, status, answer)
}

/// Whether an `Accept` header asks for GitHub's JSON media type.
fn accepts_github_json(headers: &HeaderMap) -> bool {
    headers
        .get_all("accept")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.split(';').next().unwrap_or_default().trim() == "application/vnd.github+json")
}

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

impl FakeState {
    fn authenticate(&self, headers: &HeaderMap) -> Auth {
        let Some(bearer) = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return Auth::None;
        };
        if let Some((installation, expires)) = self.tokens.get(bearer) {
            return if *expires > SystemTime::now() {
                Auth::InstallationToken {
                    installation: *installation,
                }
            } else {
                Auth::None
            };
        }
        self.verify_jwt(bearer)
            .map_or(Auth::None, |iss| Auth::AppJwt { iss })
    }

    /// The JWT's `iss` if it is signed with the fixture key (RS256), unexpired, and lives
    /// at most 10 minutes.
    fn verify_jwt(&self, token: &str) -> Option<String> {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = 0;
        // `iss` is a number in App JWTs, which the crate's own `iss` check cannot read.
        validation.set_required_spec_claims(&["exp"]);
        let claims = jsonwebtoken::decode::<Value>(token, &self.key, &validation)
            .ok()?
            .claims;
        let iat = claims.get("iat")?.as_u64()?;
        let exp = claims.get("exp")?.as_u64()?;
        let now = epoch_secs(SystemTime::now());
        if exp <= iat || exp - iat > MAX_JWT_LIFETIME || iat > now + 60 {
            return None;
        }
        match claims.get("iss")? {
            Value::Number(n) => Some(n.to_string()),
            Value::String(s) => Some(s.clone()),
            _ => None,
        }
    }

    fn serve(
        &mut self,
        route: Route,
        auth: &Auth,
        query: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        match route {
            Route::Mint { installation } => {
                if !self.is_app(auth) {
                    return unauthorized();
                }
                self.mint(&installation, body)
            }
            Route::Installation { target } => {
                if !self.is_app(auth) {
                    return unauthorized();
                }
                let account = account(&target);
                let id = self.installation_of(&account);
                if id == UNINSTALLED {
                    return not_found();
                }
                (
                    StatusCode::OK,
                    json!({"id": id, "app_id": self.app_id, "account": {"login": account}}),
                )
            }
            route => {
                let Auth::InstallationToken { installation } = auth else {
                    return unauthorized();
                };
                let target = match &route {
                    Route::RunnerGroups { org } => RunnerTarget::Org(org.clone()),
                    Route::Jit { target }
                    | Route::ListRunners { target }
                    | Route::DeleteRunner { target, .. }
                    | Route::WorkflowJob { target, .. }
                    | Route::WorkflowRun { target, .. }
                    | Route::RerunFailedJobs { target, .. } => target.clone(),
                    Route::Mint { .. } | Route::Installation { .. } => unreachable!(),
                };
                // An installation reaches only its own account.
                if self.installation_of_or_bind(&account(&target), *installation) != *installation {
                    return not_found();
                }
                match route {
                    Route::RunnerGroups { org } => self.runner_groups(&org, query),
                    Route::Jit { target } => self.jit(target, body),
                    Route::ListRunners { target } => self.list_runners(&target, query),
                    Route::DeleteRunner { target, id } => self.delete_runner(&target, &id),
                    Route::WorkflowJob { target, id } => self.workflow_job(&target, &id),
                    Route::WorkflowRun { target, id } => self.workflow_run(&target, &id),
                    Route::RerunFailedJobs { target, id } => {
                        self.rerun_failed_jobs(&target, &id, body)
                    }
                    Route::Mint { .. } | Route::Installation { .. } => unreachable!(),
                }
            }
        }
    }

    fn workflow_job(&self, target: &RunnerTarget, id: &str) -> Answer {
        let RunnerTarget::Repo { owner, repo } = target else {
            return not_found();
        };
        let full = format!("{owner}/{repo}").to_lowercase();
        match id.parse::<u64>().ok().and_then(|id| self.jobs.get(&id)) {
            Some((of, job)) if *of == full => (StatusCode::OK, job.clone()),
            _ => not_found(),
        }
    }

    fn is_app(&self, auth: &Auth) -> bool {
        matches!(auth, Auth::AppJwt { iss } if *iss == self.app_id.to_string())
    }

    fn installation_of(&mut self, account: &str) -> u64 {
        if let Some(id) = self.accounts.get(account) {
            return *id;
        }
        let id = self.next_installation;
        self.next_installation += 1;
        self.accounts.insert(account.to_string(), id);
        id
    }

    fn installation_of_or_bind(&mut self, account: &str, installation: u64) -> u64 {
        *self
            .accounts
            .entry(account.to_string())
            .or_insert(installation)
    }

    fn mint(&mut self, installation: &str, body: Option<Value>) -> Answer {
        let Ok(installation) = installation.parse::<u64>() else {
            return not_found();
        };
        if self.uninstalled.contains(&installation) {
            return not_found();
        }
        if !matches!(body, None | Some(Value::Object(_))) {
            return invalid("Invalid request: body must be an object");
        }
        let token = format!("ghs_{}", uuid::Uuid::new_v4().simple());
        let expires = SystemTime::now() + self.token_lifetime;
        self.tokens.insert(token.clone(), (installation, expires));
        let expires_at = chrono::DateTime::<chrono::Utc>::from(expires)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        (
            StatusCode::CREATED,
            json!({
                "token": token,
                "expires_at": expires_at,
                "permissions": {"organization_self_hosted_runners": "write"},
                "repository_selection": "all",
            }),
        )
    }

    fn groups_of(&self, org: &str) -> Vec<(u64, String)> {
        let mut groups = vec![(1, "Default".to_string())];
        groups.extend(
            self.groups
                .get(&org.to_lowercase())
                .into_iter()
                .flatten()
                .cloned(),
        );
        groups.sort();
        groups
    }

    fn runner_groups(&self, org: &str, query: Option<&str>) -> Answer {
        let (per_page, page) =
            match pagination(query, &["per_page", "page", "visible_to_repository"]) {
                Ok(p) => p,
                Err(answer) => return answer,
            };
        let groups = self.groups_of(org);
        let items: Vec<Value> = groups
            .iter()
            .skip((page - 1) * per_page)
            .take(per_page)
            .map(|(id, name)| {
                json!({
                    "id": id,
                    "name": name,
                    "visibility": "all",
                    "default": *id == 1,
                    "inherited": false,
                    "allows_public_repositories": false,
                })
            })
            .collect();
        (
            StatusCode::OK,
            json!({"total_count": groups.len(), "runner_groups": items}),
        )
    }

    fn jit(&mut self, target: RunnerTarget, body: Option<Value>) -> Answer {
        let Some(Value::Object(body)) = body else {
            return invalid("Invalid request: a JSON object is required");
        };
        if let Some(field) = body
            .keys()
            .find(|k| !["name", "runner_group_id", "labels", "work_folder"].contains(&k.as_str()))
        {
            return invalid(&format!("Invalid request: {field} is not a permitted key"));
        }
        let Some(name) = body
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        else {
            return invalid("Invalid request: name must be a non-empty string");
        };
        let Some(group) = body.get("runner_group_id").and_then(Value::as_u64) else {
            return invalid("Invalid request: runner_group_id must be an integer");
        };
        let labels: Option<Vec<String>> = body
            .get("labels")
            .and_then(Value::as_array)
            .filter(|l| !l.is_empty())
            .and_then(|l| l.iter().map(|v| v.as_str().map(str::to_string)).collect());
        let Some(labels) = labels else {
            return invalid("Invalid request: labels must be a non-empty array of strings");
        };
        let Some(work_folder) = body.get("work_folder").and_then(Value::as_str) else {
            return invalid("Invalid request: work_folder must be a string");
        };
        let group_exists = match &target {
            RunnerTarget::Org(org) => self.groups_of(org).iter().any(|(id, _)| *id == group),
            RunnerTarget::Repo { .. } => group == 1,
        };
        if !group_exists {
            return not_found();
        }
        if self
            .runners
            .iter()
            .any(|r| r.target == target && r.name == name)
        {
            return message(
                StatusCode::CONFLICT,
                "Already exists - A runner with the name already exists.",
            );
        }
        let id = self.next_runner_id;
        self.next_runner_id += 1;
        let encoded = format!("jit-{id}-{}", uuid::Uuid::new_v4().simple());
        let runner = FakeRunner {
            id,
            name: name.to_string(),
            labels,
            runner_group_id: group,
            target,
            busy: false,
            work_folder: work_folder.to_string(),
            encoded_jit_config: encoded.clone(),
        };
        let json_runner = runner_json(&runner);
        self.runners.push(runner);
        (
            StatusCode::CREATED,
            json!({"runner": json_runner, "encoded_jit_config": encoded}),
        )
    }

    fn list_runners(&self, target: &RunnerTarget, query: Option<&str>) -> Answer {
        let (per_page, page) = match pagination(query, &["per_page", "page", "name"]) {
            Ok(p) => p,
            Err(answer) => return answer,
        };
        let name = query_pairs(query)
            .into_iter()
            .find(|(k, _)| k == "name" && !self.ignore_runner_name_filter)
            .map(|(_, v)| v);
        let matching: Vec<&FakeRunner> = self
            .runners
            .iter()
            .filter(|r| &r.target == target)
            .filter(|r| name.as_ref().is_none_or(|n| *n == r.name))
            .collect();
        let items: Vec<Value> = matching
            .iter()
            .skip((page - 1) * per_page)
            .take(per_page)
            .map(|r| runner_json(r))
            .collect();
        (
            StatusCode::OK,
            json!({"total_count": matching.len(), "runners": items}),
        )
    }

    fn delete_runner(&mut self, target: &RunnerTarget, id: &str) -> Answer {
        let Some(index) = id.parse::<u64>().ok().and_then(|id| {
            self.runners
                .iter()
                .position(|r| r.id == id && &r.target == target)
        }) else {
            return not_found();
        };
        if self.runners[index].busy {
            return invalid("Bad request - Runner \"busy\" is still running a job\"");
        }
        self.runners.remove(index);
        (StatusCode::NO_CONTENT, Value::Null)
    }

    /// An injected failure, as GitHub would send it.
    fn fail(&mut self, scope: &str, failure: Failure) -> Response {
        match failure {
            Failure::Status(code) => {
                self.fail(scope, Failure::Message(code, "injected failure".into()))
            }
            Failure::Message(code, message) => {
                let status = StatusCode::from_u16(code).expect("a valid status code");
                self.answer(scope, status, json!({"message": message}))
            }
            Failure::RateLimited { reset_in } => {
                let reset = epoch_secs(SystemTime::now() + reset_in)
                    + u64::from(reset_in.subsec_nanos() > 0);
                let mut response = (
                    StatusCode::FORBIDDEN,
                    axum::Json(json!({"message": "API rate limit exceeded"})),
                )
                    .into_response();
                let headers = response.headers_mut();
                headers.insert("x-ratelimit-limit", RATE_LIMIT.into());
                headers.insert("x-ratelimit-remaining", 0.into());
                headers.insert("x-ratelimit-reset", reset.into());
                response
            }
            Failure::RetryAfter(wait) => {
                let mut response = (
                    StatusCode::TOO_MANY_REQUESTS,
                    axum::Json(json!({"message": "You have exceeded a secondary rate limit"})),
                )
                    .into_response();
                response
                    .headers_mut()
                    .insert("retry-after", wait.as_secs().into());
                response
            }
        }
    }

    /// An answer with GitHub's rate-limit headers for the caller's credential.
    fn answer(&mut self, scope: &str, status: StatusCode, body: Value) -> Response {
        let remaining = self.rate.entry(scope.to_string()).or_insert(RATE_LIMIT);
        *remaining = remaining.saturating_sub(1);
        let remaining = *remaining;
        let mut response = if body.is_null() {
            status.into_response()
        } else {
            (status, axum::Json(body)).into_response()
        };
        let headers = response.headers_mut();
        headers.insert("x-ratelimit-limit", RATE_LIMIT.into());
        headers.insert("x-ratelimit-remaining", remaining.into());
        headers.insert("x-ratelimit-used", (RATE_LIMIT - remaining).into());
        headers.insert("x-ratelimit-reset", self.rate_reset.into());
        headers.insert("x-ratelimit-resource", HeaderValue::from_static("core"));
        response
    }
}

fn runner_json(runner: &FakeRunner) -> Value {
    json!({
        "id": runner.id,
        "name": runner.name,
        "os": "unknown",
        "status": if runner.busy { "online" } else { "offline" },
        "busy": runner.busy,
        "runner_group_id": runner.runner_group_id,
        "labels": runner.labels.iter().map(|l| json!({"name": l, "type": "custom"})).collect::<Vec<_>>(),
    })
}

fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// `per_page` (1..=100, default 30) and `page` (from 1, default 1); 422 for keys outside
/// `allowed` or values out of range.
fn pagination(query: Option<&str>, allowed: &[&str]) -> Result<(usize, usize), Answer> {
    let mut per_page = 30;
    let mut page = 1;
    for (key, value) in query_pairs(query) {
        if !allowed.contains(&key.as_str()) {
            return Err(invalid(&format!(
                "Invalid request: unknown parameter {key}"
            )));
        }
        let number = || value.parse::<usize>().ok();
        match key.as_str() {
            "per_page" => match number() {
                Some(n @ 1..=100) => per_page = n,
                _ => return Err(invalid("Invalid request: per_page must be 1 to 100")),
            },
            "page" => match number() {
                Some(n @ 1..) => page = n,
                _ => return Err(invalid("Invalid request: page must be at least 1")),
            },
            _ => {}
        }
    }
    Ok((per_page, page))
}
