//! From a request to an answer: the route parsed from method and path, the request
//! recorded, the checks GitHub makes of every call (User-Agent, Accept, JSON body,
//! credentials, rate limit), then injected failures, then the real answer.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use dockhand::github::RunnerTarget;
use serde_json::{Value, json};

use super::limits::Scope;
use super::{Answer, Auth, Endpoint, FakeState, Recorded, not_found, runs, unauthorized};

/// What a request is for, parsed from its method and path.
pub(super) enum Route {
    Mint { installation: String },
    Installation { target: RunnerTarget },
    AppInstallation { installation: String },
    RunnerGroups { org: String },
    Jit { target: RunnerTarget },
    ListRunners { target: RunnerTarget },
    DeleteRunner { target: RunnerTarget, id: String },
    WorkflowJob { target: RunnerTarget, id: String },
    WorkflowRun { target: RunnerTarget, id: String },
    RerunFailedJobs { target: RunnerTarget, id: String },
    HookDeliveries,
    Redeliver { id: String },
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
            ["app", "installations", id] if method == Method::GET => {
                return Some((
                    Endpoint::Installation,
                    Route::AppInstallation {
                        installation: id.to_string(),
                    },
                ));
            }
            ["app", "hook", "deliveries"] if method == Method::GET => {
                return Some((Endpoint::HookDeliveries, Route::HookDeliveries));
            }
            ["app", "hook", "deliveries", id, "attempts"] if method == Method::POST => {
                return Some((Endpoint::Redeliver, Route::Redeliver { id: id.to_string() }));
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

/// The account (lower-cased) a target belongs to.
fn account(target: &RunnerTarget) -> String {
    match target {
        RunnerTarget::Org(org) => org.to_lowercase(),
        RunnerTarget::Repo { owner, .. } => owner.to_lowercase(),
    }
}

pub(super) async fn handle(
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
    super::hooks::send_outbox(&state);
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
    let (auth, app) = state.authenticate(&headers);
    let route = Route::parse(&method, uri.path());
    state.requests.push((
        route.as_ref().map(|(e, _)| *e),
        Recorded {
            method: method.to_string(),
            path: uri.path().to_string(),
            query: uri.query().map(str::to_string),
            body: json_body.clone(),
            auth: auth.clone(),
            app,
        },
    ));
    let scope = Scope::of(&auth, app);
    if !headers.contains_key("user-agent") {
        // GitHub refuses requests without one.
        return state.answer(
            scope,
            StatusCode::FORBIDDEN,
            json!({"message": "Request forbidden: please make sure your request has a User-Agent header"}),
        );
    }
    if !accepts_github_json(&headers) {
        // GitHub's docs ask every REST call for this media type; dockhand must send it.
        return state.answer(
            scope,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            json!({"message": "Unsupported 'Accept' header: send application/vnd.github+json"}),
        );
    }
    if scope != Scope::Anonymous && state.exhausted(scope) {
        return state.exhausted_answer();
    }
    let Some((endpoint, route)) = route else {
        return state.answer(
            scope,
            StatusCode::NOT_FOUND,
            json!({"message": "Not Found"}),
        );
    };
    if let Some(failure) = state.take_failure(app, endpoint) {
        return state.fail(scope, failure);
    }
    if !body_ok {
        return state.answer(
            scope,
            StatusCode::BAD_REQUEST,
            json!({"message": "Problems parsing JSON"}),
        );
    }
    let (status, answer) = state.serve(route, &auth, app, uri.query(), json_body);
    let mut response = state.answer(scope, status, answer);
    if let Some(link) = state.hooks.link.take() {
        response
            .headers_mut()
            .insert("link", link.parse().expect("a valid Link header"));
    }
    response
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

impl FakeState {
    /// The real answer to a well-formed request from `auth`, acting for App `app`.
    fn serve(
        &mut self,
        route: Route,
        auth: &Auth,
        app: Option<u64>,
        query: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        match (auth, app) {
            (Auth::AppJwt { .. }, Some(app)) => self.serve_app(route, app, query, body),
            (Auth::InstallationToken { installation }, Some(app)) => {
                self.serve_installation(route, app, *installation, query, body)
            }
            _ => unauthorized(),
        }
    }

    /// The answer to App `app`'s JWT, which reaches only the App endpoints.
    fn serve_app(
        &mut self,
        route: Route,
        app: u64,
        query: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        match route {
            Route::HookDeliveries => self.list_deliveries(app, query),
            Route::Redeliver { id } => self.redeliver(app, &id),
            Route::Mint { installation } => self.mint(app, &installation, body),
            Route::Installation { target } => self.installation(app, &account(&target)),
            Route::AppInstallation { installation } => self.app_installation(app, &installation),
            _ => unauthorized(),
        }
    }

    /// The answer to a token of `installation` (App `app`'s), which reaches only the
    /// installation's account.
    fn serve_installation(
        &mut self,
        route: Route,
        app: u64,
        installation: u64,
        query: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let target = match &route {
            Route::Mint { .. }
            | Route::Installation { .. }
            | Route::AppInstallation { .. }
            | Route::HookDeliveries
            | Route::Redeliver { .. } => {
                return unauthorized();
            }
            Route::RunnerGroups { org } => RunnerTarget::Org(org.clone()),
            Route::Jit { target }
            | Route::ListRunners { target }
            | Route::DeleteRunner { target, .. }
            | Route::WorkflowJob { target, .. }
            | Route::WorkflowRun { target, .. }
            | Route::RerunFailedJobs { target, .. } => target.clone(),
        };
        if !self.reaches(app, installation, &account(&target)) {
            return not_found();
        }
        match route {
            Route::Mint { .. }
            | Route::Installation { .. }
            | Route::AppInstallation { .. }
            | Route::HookDeliveries
            | Route::Redeliver { .. } => unreachable!(),
            Route::RunnerGroups { org } => self.runner_groups(&org, query),
            Route::Jit { target } => self.jit(app, target, body),
            Route::ListRunners { target } => self.list_runners(&target, query),
            Route::DeleteRunner { target, id } => self.delete_runner(&target, &id),
            Route::WorkflowJob { target, id } => self.workflow_job(&target, &id),
            Route::WorkflowRun { target, id } => self.workflow_run(&target, &id),
            Route::RerunFailedJobs { target, id } => self.rerun_failed_jobs(&target, &id, body),
        }
    }
}
