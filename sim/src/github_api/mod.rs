//! The simulated GitHub REST API, as strict as the tests' fake GitHub: a `User-Agent`, the
//! GitHub JSON media type, a JWT of one of the Apps signed with that App's key (RS256, at
//! most 10 minutes) or an unexpired installation token for that account, and bodies with
//! only the keys GitHub permits. Lists are paged as GitHub pages them (`per_page`, `page`,
//! a `Link` header), and a workflow job is readable by the installations on its repository.
//! With [`crate::settings::Settings::quota`] set, every authenticated call counts against
//! GitHub's rate limits (see [`quota`]). Each App reads its own webhook delivery log and
//! asks for redeliveries from it ([`deliveries`]).

mod auth;
mod deliveries;
mod endpoints;
mod paging;
mod quota;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::DecodingKey;
use serde_json::{Value, json};

use crate::faults::{Fault, Faults};
use crate::limits::{GitHubLimits, LimitKind};
use crate::model::Model;
use crate::webhooks::Sender;
use auth::{Auth, accepts_github_json, authenticate};
use endpoints::{app_installation, mint, org_call, unauthorized, workflow_job};
use paging::pagination;
use quota::RateHeaders;

pub struct GitHubApi {
    pub model: Arc<Mutex<Model>>,
    pub faults: Faults,
    /// Each App's public key, by App id.
    keys: HashMap<u64, DecodingKey>,
    /// GitHub's rate limits; `None` when the world enforces none.
    limits: Option<Mutex<GitHubLimits>>,
    /// Calls by endpoint, failed and refused ones included (unknown paths are not counted).
    calls: Mutex<BTreeMap<&'static str, u64>>,
    /// The webhook deliveries: their log, and redeliveries.
    webhooks: Arc<Sender>,
}

impl GitHubApi {
    pub fn new(
        model: Arc<Mutex<Model>>,
        faults: Faults,
        webhooks: Arc<Sender>,
    ) -> anyhow::Result<Self> {
        let (apps, quota) = {
            let model = model.lock().unwrap();
            (model.settings.apps.clone(), model.settings.quota.clone())
        };
        anyhow::ensure!(
            !apps.is_empty(),
            "a simulated GitHub needs at least one App"
        );
        let keys = apps
            .iter()
            .map(|a| {
                DecodingKey::from_rsa_pem(&a.public_key_pem)
                    .map(|key| (a.id, key))
                    .map_err(|e| anyhow::anyhow!("App {}'s public key: {e}", a.id))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            model,
            faults,
            keys,
            limits: quota.map(|q| Mutex::new(GitHubLimits::new(q))),
            calls: Mutex::default(),
            webhooks,
        })
    }

    /// Calls so far, by endpoint: `mint`, `installation`, `runner_groups`, `jitconfig`,
    /// `list_runners`, `delete_runner`, `workflow_job`, `deliveries` (the delivery log) and
    /// `redeliver` (a redelivery asked for).
    pub fn calls(&self) -> Vec<(&'static str, u64)> {
        let calls = self.calls.lock().unwrap();
        calls.iter().map(|(e, n)| (*e, *n)).collect()
    }

    /// Calls the rate limits refused (403, or 429), by App and limit: empty when the world
    /// enforces none.
    pub fn refused(&self) -> Vec<(u64, LimitKind, u64)> {
        self.limits
            .as_ref()
            .map(|l| l.lock().unwrap().refused())
            .unwrap_or_default()
    }
}

type Answer = (StatusCode, Value);

fn message(status: StatusCode, text: &str) -> Answer {
    (status, json!({ "message": text }))
}

/// What `answer` came to: the answer, its fault, its rate-limit headers, the App whose
/// call is in flight until it is sent (with limits on), and the `Link` header of a page
/// that is not paged by number.
struct Reply {
    answer: Answer,
    fault: Fault,
    rate: RateHeaders,
    in_flight: Option<u64>,
    link: Option<String>,
}

impl Reply {
    fn plain(answer: Answer) -> Self {
        Self {
            answer,
            fault: Fault::None,
            rate: RateHeaders::Unlimited,
            in_flight: None,
            link: None,
        }
    }
}

/// An admitted call of `app`, in flight until dropped: when answered, or when the caller
/// gives up on a held answer (axum drops the handler).
struct InFlight<'a> {
    api: &'a GitHubApi,
    app: u64,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(limits) = &self.api.limits {
            limits.lock().unwrap().done(self.app);
        }
    }
}

pub async fn handle(
    State(api): State<Arc<GitHubApi>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let reply = answer(&api, &method, &uri, &headers, &body);
    let in_flight = reply.in_flight.map(|app| InFlight { api: &api, app });
    if reply.fault == Fault::Timeout {
        tokio::time::sleep(api.faults.hold()).await;
    }
    drop(in_flight);
    let link = reply.link.clone().or_else(|| {
        (reply.answer.0 == StatusCode::OK)
            .then(|| page_link(&uri, &headers, &reply.answer.1))
            .flatten()
    });
    let mut response = respond(reply.answer);
    let clock = api.model.lock().unwrap().clock;
    reply.rate.apply(response.headers_mut(), &clock);
    if let Some(link) = link.and_then(|l| HeaderValue::from_str(&l).ok()) {
        response
            .headers_mut()
            .insert(axum::http::header::LINK, link);
    }
    response
}

/// The `Link` header for an answer that is a page of a list (it has a `total_count`).
fn page_link(uri: &Uri, headers: &HeaderMap, body: &Value) -> Option<String> {
    let total = body.get("total_count")?.as_u64()?;
    let query = uri.query().unwrap_or_default();
    let pages = pagination(
        query,
        &["per_page", "page", "name", "visible_to_repository"],
    )
    .ok()?;
    paging::link(host(headers), uri.path(), query, total as usize, pages)
}

/// The host a call was made to, for the links of its answer.
fn host(headers: &HeaderMap) -> &str {
    headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("api.github.com")
}

fn respond((status, body): Answer) -> Response {
    if status == StatusCode::NO_CONTENT {
        status.into_response()
    } else {
        (status, axum::Json(body)).into_response()
    }
}

/// Which endpoint a call is for, and the identity its faults are decided by; `None` for a
/// path the simulator does not serve.
fn route(
    method: &Method,
    uri: &Uri,
    path: &[&str],
    json: Option<&Value>,
) -> Option<(&'static str, String)> {
    let query = uri.query().unwrap_or_default();
    Some(match (method, path) {
        (&Method::POST, ["app", "installations", id, "access_tokens"]) => ("mint", id.to_string()),
        (&Method::GET, ["app", "installations", id]) => ("installation", id.to_string()),
        (&Method::GET, ["orgs" | "repos", ..]) if path.last() == Some(&"installation") => {
            ("installation", uri.path().to_string())
        }
        (&Method::GET, ["orgs", _, "actions", "runner-groups"]) => {
            ("runner_groups", query.to_string())
        }
        (&Method::POST, ["orgs", _, "actions", "runners", "generate-jitconfig"]) => (
            "jitconfig",
            json.and_then(|b| b.get("name"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        ),
        (&Method::GET, ["orgs", _, "actions", "runners"]) => ("list_runners", query.to_string()),
        (&Method::DELETE, ["orgs", _, "actions", "runners", id]) => {
            ("delete_runner", id.to_string())
        }
        (&Method::GET, ["repos", _, _, "actions", "jobs", id]) => ("workflow_job", id.to_string()),
        (&Method::GET, ["app", "hook", "deliveries"]) => ("deliveries", query.to_string()),
        (&Method::POST, ["app", "hook", "deliveries", id, "attempts"]) => {
            ("redeliver", id.to_string())
        }
        _ => return None,
    })
}

fn answer(api: &GitHubApi, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Reply {
    if !headers.contains_key("user-agent") {
        let text = "Request forbidden: please make sure your request has a User-Agent header";
        return Reply::plain(message(StatusCode::FORBIDDEN, text));
    }
    if !accepts_github_json(headers) {
        let text = "Unsupported 'Accept' header: send application/vnd.github+json";
        return Reply::plain(message(StatusCode::UNSUPPORTED_MEDIA_TYPE, text));
    }
    let auth = authenticate(api, headers);
    let path: Vec<&str> = uri.path().trim_start_matches('/').split('/').collect();
    let query = uri.query().unwrap_or_default();
    let json: Option<Value> = if body.is_empty() {
        None
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => Some(v),
            Err(_) => {
                return Reply::plain(message(StatusCode::BAD_REQUEST, "Problems parsing JSON"));
            }
        }
    };
    let Some((endpoint, key)) = route(method, uri, &path, json.as_ref()) else {
        return Reply::plain(message(StatusCode::NOT_FOUND, "Not Found"));
    };
    *api.calls.lock().unwrap().entry(endpoint).or_default() += 1;
    let (rate, in_flight) = match quota::admit(api, auth, method) {
        Ok(admitted) => admitted,
        Err(refused) => return *refused,
    };
    let reply = |answer, fault| Reply {
        answer,
        fault,
        rate,
        in_flight,
        link: None,
    };
    let fault = api.faults.decide(endpoint, &key);
    if fault == Fault::Error {
        return reply(message(StatusCode::BAD_GATEWAY, "Server Error"), fault);
    }
    match (endpoint, path.as_slice()) {
        ("deliveries", _) => {
            let (answer, link) = deliveries::list(api, auth, uri, host(headers));
            return Reply {
                link,
                ..reply(answer, fault)
            };
        }
        ("redeliver", [.., id, _]) => return reply(deliveries::redeliver(api, auth, id), fault),
        _ => {}
    }
    let mut model = api.model.lock().unwrap();
    let answer = match (endpoint, path.as_slice()) {
        ("mint", [_, _, id, _]) => match auth {
            Auth::App(app) => mint(&mut model, app, id, json.as_ref()),
            _ => unauthorized(),
        },
        ("installation", ["app", "installations", id]) => match auth {
            Auth::App(app) => app_installation(&model, app, id),
            _ => unauthorized(),
        },
        ("installation", [kind, account, ..]) => match auth {
            Auth::App(app) => {
                let account = if *kind == "orgs" { *account } else { account };
                match model.installation_of(account, app) {
                    Some(id) => (
                        StatusCode::OK,
                        json!({"id": id, "account": {"login": account}, "app_id": app}),
                    ),
                    None => message(StatusCode::NOT_FOUND, "Not Found"),
                }
            }
            _ => unauthorized(),
        },
        ("workflow_job", ["repos", owner, repo, _, _, id]) => {
            workflow_job(&model, auth, owner, repo, id)
        }
        (_, ["orgs", org, ..]) => match auth {
            Auth::Installation(i) if model.serves(org, i) => {
                org_call(&mut model, endpoint, &path, query, json.as_ref())
            }
            Auth::Installation(_) => message(
                StatusCode::FORBIDDEN,
                "Resource not accessible by integration",
            ),
            _ => unauthorized(),
        },
        _ => message(StatusCode::NOT_FOUND, "Not Found"),
    };
    reply(answer, fault)
}
