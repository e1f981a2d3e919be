//! Installation tokens: minted with the App JWT, cached per installation, and replaced
//! shortly before they expire, so the steady state is one mint per installation per
//! token lifetime (an hour on GitHub).
//!
//! dockhand mints tokens itself (`POST /app/installations/{id}/access_tokens` through the
//! App-authenticated octocrab) rather than letting `Octocrab::installation` mint them
//! behind its back: the mint is then counted like every other call, its failures are
//! classified from status and headers (a rate-limited mint is `RateLimited`, not an
//! opaque error), and the refresh margin is ours to choose.
//!
//! What is cached is the token itself. A call made with it carries it as
//! `Authorization: Bearer <token>` (see [`Caller::Installation`]); octocrab has no way to
//! take an installation token minted elsewhere, only its own installation auth (which
//! mints behind our back) and user or personal tokens, which these are not.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::Deserialize;

use super::error::GitHubError;
use super::request::{self, Caller, Endpoint, Method};
use crate::domain::InstallationId;

/// A cached token is replaced once it has less than this left: enough to cover a slow
/// call, and clock skew between dockhand and GitHub.
const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// An installation token, as handed to a caller.
#[derive(Clone)]
pub(super) struct InstallationToken {
    /// The token; `Debug` shows it redacted.
    pub token: SecretString,
    /// Identifies the token, so a caller that saw it refused can replace exactly it.
    pub serial: u64,
    /// Whether this call minted the token (a refusal of a fresh token is final).
    pub fresh: bool,
}

struct Minted {
    token: SecretString,
    serial: u64,
    expires_at: DateTime<Utc>,
}

/// One token per installation, each behind its own async lock so concurrent callers for
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
    /// How many installations have a token (for `Debug`).
    pub fn len(&self) -> usize {
        self.slots.lock().expect("token map lock").len()
    }

    /// Drops the installation's token: GitHub no longer knows the installation.
    pub fn forget(&self, installation: InstallationId) {
        self.slots
            .lock()
            .expect("token map lock")
            .remove(&installation);
    }

    /// The installation's token, good for at least [`REFRESH_MARGIN`]: minted as the App
    /// (`app`) when there is none, it is about to expire, or it is the token `stale`
    /// that GitHub just refused.
    pub async fn token(
        &self,
        app: Caller<'_>,
        timeout: Duration,
        installation: InstallationId,
        stale: Option<u64>,
    ) -> Result<InstallationToken, GitHubError> {
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
                return Ok(InstallationToken {
                    token: minted.token.clone(),
                    serial: minted.serial,
                    fresh: false,
                });
            }
        }
        let minted = self.mint(app, timeout, installation).await?;
        let token = InstallationToken {
            token: minted.token.clone(),
            serial: minted.serial,
            fresh: true,
        };
        *slot = Some(minted);
        Ok(token)
    }

    async fn mint(
        &self,
        app: Caller<'_>,
        timeout: Duration,
        installation: InstallationId,
    ) -> Result<Minted, GitHubError> {
        let path = format!("/app/installations/{installation}/access_tokens");
        let body = serde_json::json!({});
        let answer = request::send(
            app,
            timeout,
            Endpoint::InstallationToken,
            Method::Post(&body),
            &path,
            None,
        )
        .await?;
        let TokenAnswer { token, expires_at } = answer.json()?;
        tracing::debug!(
            github.installation = %installation,
            %expires_at,
            "minted an installation token"
        );
        Ok(Minted {
            token,
            serial: self.serial.fetch_add(1, Ordering::Relaxed),
            expires_at,
        })
    }
}
