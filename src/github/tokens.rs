//! Installation tokens: minted with the App JWT, cached per installation, and replaced
//! shortly before they expire, so the steady state is one mint per installation per
//! token lifetime (an hour on GitHub).
//!
//! dockhand mints tokens itself (`POST /app/installations/{id}/access_tokens` through the
//! App-authenticated octocrab) rather than letting `Octocrab::installation` mint them
//! behind its back: the mint is then counted like every other call, its failures are
//! classified from status and headers (a rate-limited mint is `RateLimited`, not an
//! opaque error), and the refresh margin is ours to choose.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use octocrab::Octocrab;
use secrecy::SecretString;
use serde::Deserialize;

use super::error::GitHubError;
use super::request::{self, Endpoint, Method, RateScope};
use crate::domain::InstallationId;

/// A cached token is replaced once it has less than this left: enough to cover a slow
/// call, and clock skew between dockhand and GitHub.
const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// An installation-scoped client: octocrab carrying one installation token.
#[derive(Clone)]
pub(super) struct InstallationClient {
    pub client: Octocrab,
    /// Identifies the token, so a caller that saw it refused can replace exactly it.
    pub serial: u64,
    /// Whether this call minted the token (a refusal of a fresh token is final).
    pub fresh: bool,
}

struct Minted {
    client: Octocrab,
    serial: u64,
    expires_at: DateTime<Utc>,
}

/// One client per installation, each behind its own async lock so concurrent callers for
/// one installation wait for a single mint instead of each minting.
#[derive(Default)]
pub(super) struct Tokens {
    slots: Mutex<HashMap<InstallationId, Arc<tokio::sync::Mutex<Option<Minted>>>>>,
    serial: AtomicU64,
}

#[derive(Deserialize)]
struct TokenAnswer {
    token: SecretString,
    expires_at: DateTime<Utc>,
}

impl Tokens {
    /// How many installations have a client (for `Debug`).
    pub fn len(&self) -> usize {
        self.slots.lock().expect("token map lock").len()
    }

    /// The installation's client with a token good for at least [`REFRESH_MARGIN`],
    /// minting one when there is none, it is about to expire, or it is the token `stale`
    /// that GitHub just refused.
    pub async fn client(
        &self,
        app: &Octocrab,
        timeout: Duration,
        installation: InstallationId,
        stale: Option<u64>,
    ) -> Result<InstallationClient, GitHubError> {
        let slot = self
            .slots
            .lock()
            .expect("token map lock")
            .entry(installation)
            .or_default()
            .clone();
        let mut slot = slot.lock().await;
        if let Some(minted) = slot.as_ref() {
            let fresh_enough = minted.expires_at - Utc::now()
                > chrono::Duration::from_std(REFRESH_MARGIN).expect("a small duration");
            if fresh_enough && stale != Some(minted.serial) {
                return Ok(InstallationClient {
                    client: minted.client.clone(),
                    serial: minted.serial,
                    fresh: false,
                });
            }
        }
        let minted = self.mint(app, timeout, installation).await?;
        let client = InstallationClient {
            client: minted.client.clone(),
            serial: minted.serial,
            fresh: true,
        };
        *slot = Some(minted);
        Ok(client)
    }

    async fn mint(
        &self,
        app: &Octocrab,
        timeout: Duration,
        installation: InstallationId,
    ) -> Result<Minted, GitHubError> {
        let path = format!("/app/installations/{installation}/access_tokens");
        let body = serde_json::json!({});
        let answer = request::send(
            app,
            timeout,
            Endpoint::InstallationToken,
            RateScope::App,
            Method::Post(&body),
            &path,
        )
        .await?;
        let TokenAnswer { token, expires_at } = answer.json()?;
        let client = app
            .user_access_token(token)
            .map_err(|e| GitHubError::Transport(Box::new(e)))?;
        tracing::debug!(
            github.installation = %installation,
            %expires_at,
            "minted an installation token"
        );
        Ok(Minted {
            client,
            serial: self.serial.fetch_add(1, Ordering::Relaxed),
            expires_at,
        })
    }
}
