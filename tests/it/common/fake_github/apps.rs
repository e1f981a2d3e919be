//! GitHub Apps and their installations. A JWT acts as an App only if its `iss` is the App's
//! id and the App's own key signed it. Each App has its own installation on each account
//! (distinct ids); only the owning App's JWT mints tokens for an installation (404 for any
//! other, as GitHub answers), and a token reaches only its installation's account.

use std::collections::HashMap;
use std::time::SystemTime;

use axum::http::{HeaderMap, StatusCode};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};

use super::{Answer, Auth, FakeGitHub, FakeState, epoch_secs, fixture, invalid, not_found};

/// GitHub refuses App JWTs that live longer than this.
const MAX_JWT_LIFETIME: u64 = 600;
/// The fixture key pairs (`NAME.pem`, `NAME.pub.pem`) of the first and second App.
const KEYS: [&str; 2] = ["github-app-test-key", "github-app-second-key"];
/// The first App's installations are numbered from here, the next App's 1000 later.
const FIRST_INSTALLATION_ID: u64 = 7001;
/// The installation of an account an App was uninstalled from: no id is ever this.
const UNINSTALLED: u64 = 0;

/// One trusted App.
pub(super) struct App {
    pub(super) id: u64,
    /// The fixture file of its private key, for dockhand's settings.
    pub(super) private_key: String,
    key: DecodingKey,
    /// Which installation each account (lower-cased) is, once known ([`UNINSTALLED`] after
    /// an uninstall).
    accounts: HashMap<String, u64>,
    next_installation: u64,
}

impl App {
    /// The App at `index` of [`FakeGitHub::start_apps`]; panics past the fixture keys.
    pub(super) fn new(index: usize, id: u64) -> Self {
        let name = KEYS.get(index).unwrap_or_else(|| {
            panic!(
                "the fake GitHub has keys for {} Apps, not {}",
                KEYS.len(),
                index + 1
            )
        });
        let pem = std::fs::read(fixture(&format!("{name}.pub.pem"))).expect("fixture key");
        Self {
            id,
            private_key: format!("{name}.pem"),
            key: DecodingKey::from_rsa_pem(&pem).expect("a valid public key"),
            accounts: HashMap::new(),
            next_installation: FIRST_INSTALLATION_ID + 1000 * index as u64,
        }
    }
}

impl FakeGitHub {
    /// The first App is installed on `account` as `installation`, as the account's webhooks
    /// will say (otherwise the account's first caller binds it).
    pub fn install_on(&self, account: &str, installation: u64) {
        let first = self.lock().apps[0].id;
        self.install_app_on(first, account, installation);
    }

    /// App `app` is installed on `account` as `installation`, as [`FakeGitHub::install_on`]
    /// does for the first App.
    pub fn install_app_on(&self, app: u64, account: &str, installation: u64) {
        let mut state = self.lock();
        state.installations.insert(installation, app);
        state
            .app_mut(app)
            .accounts
            .insert(account.to_lowercase(), installation);
    }

    /// Uninstalls the first App from `account`, as an org owner would: the installation's
    /// tokens are revoked (401), minting for it answers 404, and so does the account's
    /// installation lookup, until [`FakeGitHub::reinstall`].
    pub fn uninstall(&self, account: &str) {
        let mut state = self.lock();
        let first = state.apps[0].id;
        state.uninstall(first, &account.to_lowercase());
    }

    /// Uninstalls the first App from `account` and installs it again: the account gets a
    /// new installation id (returned), and the old one is gone as after
    /// [`FakeGitHub::uninstall`].
    pub fn reinstall(&self, account: &str) -> u64 {
        let mut state = self.lock();
        let first = state.apps[0].id;
        let account = account.to_lowercase();
        state.uninstall(first, &account);
        let new = state.new_installation(first);
        state.app_mut(first).accounts.insert(account, new);
        new
    }

    /// How long the installation tokens minted from now on live (an hour by default).
    pub fn set_token_lifetime(&self, lifetime: std::time::Duration) {
        self.lock().token_lifetime = lifetime;
    }
}

impl FakeState {
    fn app_mut(&mut self, id: u64) -> &mut App {
        self.apps
            .iter_mut()
            .find(|a| a.id == id)
            .unwrap_or_else(|| panic!("the fake GitHub does not know App {id}"))
    }

    /// Who the request's bearer credentials are, and which App they act for.
    pub(super) fn authenticate(&self, headers: &HeaderMap) -> (Auth, Option<u64>) {
        let Some(bearer) = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return (Auth::None, None);
        };
        if let Some((installation, expires)) = self.tokens.get(bearer) {
            return if *expires > SystemTime::now() {
                let app = self.installations.get(installation).copied();
                let installation = *installation;
                (Auth::InstallationToken { installation }, app)
            } else {
                (Auth::None, None)
            };
        }
        self.apps
            .iter()
            .find_map(|app| {
                let iss = verify_jwt(bearer, &app.key)?;
                let acts_for = (iss == app.id.to_string()).then_some(app.id);
                Some((Auth::AppJwt { iss }, acts_for))
            })
            .unwrap_or((Auth::None, None))
    }

    /// App `app`'s installation on `account` (lower-cased), numbered on first sight.
    fn installation_of(&mut self, app: u64, account: &str) -> u64 {
        if let Some(id) = self.app_mut(app).accounts.get(account) {
            return *id;
        }
        let id = self.new_installation(app);
        self.app_mut(app).accounts.insert(account.to_string(), id);
        id
    }

    fn new_installation(&mut self, app: u64) -> u64 {
        let of = self.app_mut(app);
        let id = of.next_installation;
        of.next_installation += 1;
        self.installations.insert(id, app);
        id
    }

    fn uninstall(&mut self, app: u64, account: &str) {
        let old = self.installation_of(app, account);
        self.uninstalled.insert(old);
        self.tokens
            .retain(|_, (installation, _)| *installation != old);
        self.app_mut(app)
            .accounts
            .insert(account.to_string(), UNINSTALLED);
    }

    /// Whether `installation` (of App `app`) may act on `account` (lower-cased): an
    /// installation reaches only its own account, binding an account its App has no
    /// installation on yet.
    pub(super) fn reaches(&mut self, app: u64, installation: u64, account: &str) -> bool {
        *self
            .app_mut(app)
            .accounts
            .entry(account.to_string())
            .or_insert(installation)
            == installation
    }

    /// `GET .../installation` for App `app`.
    pub(super) fn installation(&mut self, app: u64, account: &str) -> Answer {
        let id = self.installation_of(app, account);
        if id == UNINSTALLED {
            return not_found();
        }
        (
            StatusCode::OK,
            json!({"id": id, "app_id": app, "account": {"login": account}}),
        )
    }

    /// `GET /app/installations/{id}` with App `app`'s JWT: an App sees only its own.
    pub(super) fn app_installation(&mut self, app: u64, installation: &str) -> Answer {
        let Ok(id) = installation.parse::<u64>() else {
            return not_found();
        };
        if self.installations.get(&id) != Some(&app) || self.uninstalled.contains(&id) {
            return not_found();
        }
        (StatusCode::OK, json!({"id": id, "app_id": app}))
    }

    /// `POST /app/installations/{id}/access_tokens` with App `app`'s JWT. An installation
    /// the fake has not seen becomes the minting App's.
    pub(super) fn mint(&mut self, app: u64, installation: &str, body: Option<Value>) -> Answer {
        let Ok(installation) = installation.parse::<u64>() else {
            return not_found();
        };
        if self.uninstalled.contains(&installation)
            || *self.installations.entry(installation).or_insert(app) != app
        {
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
}

/// The JWT's `iss` if `key` signed it (RS256), it is unexpired, and it lives at most 10
/// minutes.
fn verify_jwt(token: &str, key: &DecodingKey) -> Option<String> {
    let mut validation = Validation::new(Algorithm::RS256);
    validation.leeway = 0;
    // `iss` is a number in App JWTs, which the crate's own `iss` check cannot read.
    validation.set_required_spec_claims(&["exp"]);
    let claims = jsonwebtoken::decode::<Value>(token, key, &validation)
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
