//! Installations: which one acts on a target, and calls made as one.
//!
//! An event that names no installation is served by the App's installation on the
//! target's account, looked up with the App JWT once and cached. An installation can go
//! away under us: the App uninstalled, or reinstalled under a new id. GitHub then answers
//! 404 to minting its token, and every call as it fails until the caches forget it. So a
//! 404 on minting drops the installation from both caches, looks the target's installation
//! up again, and, if that names another one, makes the call once more as it.

use serde::Deserialize;

use super::budget::Permit;
use super::request::{self, Answer, Caller, Endpoint, Method};
use super::tokens::InstallationToken;
use super::{AppClient, GitHubError, RunnerTarget};
use crate::domain::InstallationId;

#[derive(Deserialize)]
struct InstallationAnswer {
    id: u64,
}

/// Why a call made as an installation failed.
#[derive(Debug)]
pub(super) enum CallError {
    /// GitHub no longer knows the installation (minting its token answered 404), and the
    /// target's installation, looked up again, is the same one or none.
    InstallationGone,
    /// The call, or minting its token, failed otherwise.
    GitHub(GitHubError),
}

impl From<CallError> for GitHubError {
    fn from(err: CallError) -> Self {
        match err {
            CallError::InstallationGone => GitHubError::NotFound,
            CallError::GitHub(err) => err,
        }
    }
}

impl From<GitHubError> for CallError {
    fn from(err: GitHubError) -> Self {
        Self::GitHub(err)
    }
}

impl AppClient {
    /// The App's installation on `target`'s account, for events that carry no
    /// `installation` (org or repo webhooks rather than the App's). Asked with the App
    /// JWT (`GET /orgs/{org}/installation` or `/repos/{owner}/{repo}/installation`) once
    /// per target, then cached until GitHub says the installation is gone. `NotFound` when
    /// the App is not installed there.
    #[tracing::instrument(skip_all, fields(github.target = %target))]
    pub async fn installation_for(
        &self,
        target: &RunnerTarget,
    ) -> Result<InstallationId, GitHubError> {
        if let Some(id) = self.lock_installations().get(target) {
            return Ok(*id);
        }
        let path = format!("{}/installation", target.path());
        let answer: InstallationAnswer = request::send(
            self.app_caller(),
            self.inner.timeout,
            Endpoint::Installation,
            Method::Get,
            &path,
            None,
        )
        .await?
        .json()?;
        let id = InstallationId(answer.id);
        self.lock_installations().insert(target.clone(), id);
        Ok(id)
    }

    /// The App's installation on `target`'s account, if looked up already.
    pub(super) fn cached_installation(&self, target: &RunnerTarget) -> Option<InstallationId> {
        self.lock_installations().get(target).copied()
    }

    /// Whether `installation` is this App's (`GET /app/installations/{id}` with the App
    /// JWT: GitHub shows an App only its own).
    pub(super) async fn owns_installation(
        &self,
        installation: InstallationId,
    ) -> Result<bool, GitHubError> {
        let path = format!("/app/installations/{installation}");
        let answer = request::send(
            self.app_caller(),
            self.inner.timeout,
            Endpoint::Installation,
            Method::Get,
            &path,
            None,
        )
        .await;
        match answer {
            Ok(_) => Ok(true),
            Err(GitHubError::NotFound) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// One call on `target` as `installation`, with budget room already taken if `permit`
    /// is some. A gone installation (see the module's doc) is replaced by the target's
    /// current one for one more try.
    pub(super) async fn as_installation(
        &self,
        installation: InstallationId,
        target: &RunnerTarget,
        call: (Endpoint, Method<'_>, &str),
        permit: Option<Permit>,
    ) -> Result<Answer, CallError> {
        match self.call_as(installation, call, permit).await {
            Err(CallError::InstallationGone) => {}
            other => return other,
        }
        let current = match self.installation_for(target).await {
            Ok(current) if current != installation => current,
            Ok(_) | Err(GitHubError::NotFound) => return Err(CallError::InstallationGone),
            Err(err) => return Err(err.into()),
        };
        tracing::info!(
            github.installation = %current,
            github.gone_installation = %installation,
            "the App's installation is gone (reinstalled?); calling as the account's current one"
        );
        self.call_as(current, call, None).await
    }

    /// One call with the installation's token. A cached token that GitHub refuses (401:
    /// revoked, or expired early) is replaced and the call made once more.
    async fn call_as(
        &self,
        installation: InstallationId,
        (endpoint, method, path): (Endpoint, Method<'_>, &str),
        permit: Option<Permit>,
    ) -> Result<Answer, CallError> {
        let inner = &*self.inner;
        let caller = |token| Caller::Installation {
            client: &inner.api,
            id: installation,
            token,
            budget: &inner.budget,
        };
        let token = self.token(installation, None).await?;
        let answer = request::send(
            caller(&token.token),
            inner.timeout,
            endpoint,
            method,
            path,
            permit,
        )
        .await;
        match answer {
            Err(GitHubError::Unauthorized) if !token.fresh => {
                tracing::info!(
                    github.installation = %installation,
                    "GitHub refused a cached installation token; minting a new one"
                );
                let replacement = self.token(installation, Some(token.serial)).await?;
                Ok(request::send(
                    caller(&replacement.token),
                    inner.timeout,
                    endpoint,
                    method,
                    path,
                    None,
                )
                .await?)
            }
            other => Ok(other?),
        }
    }

    /// The installation's token (see [`Tokens::token`](super::tokens::Tokens::token)). A
    /// mint answered 404 means GitHub no longer knows the installation: it is forgotten,
    /// with every target it was cached for.
    async fn token(
        &self,
        installation: InstallationId,
        stale: Option<u64>,
    ) -> Result<InstallationToken, CallError> {
        let inner = &*self.inner;
        match inner
            .tokens
            .token(self.app_caller(), inner.timeout, installation, stale)
            .await
        {
            Ok(token) => Ok(token),
            Err(GitHubError::NotFound) => {
                inner.tokens.forget(installation);
                self.lock_installations()
                    .retain(|_, cached| *cached != installation);
                Err(CallError::InstallationGone)
            }
            Err(err) => Err(err.into()),
        }
    }

    /// Calls made as the App itself (a fresh JWT each).
    pub(super) fn app_caller(&self) -> Caller<'_> {
        Caller::App {
            client: &self.inner.app,
            budget: &self.inner.budget,
        }
    }

    fn lock_installations(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<RunnerTarget, InstallationId>> {
        self.inner
            .installations
            .lock()
            .expect("installation cache lock")
    }
}
