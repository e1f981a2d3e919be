//! Whole listings for the reconciler's orphan sweep: every runner registered on a target,
//! page by page to the end.

use super::request::{Endpoint, Method};
use super::{
    AppClient, GitHubError, MAX_PAGES, PER_PAGE, RegisteredRunner, RunnerPage, RunnerTarget,
};
use crate::domain::InstallationId;

impl AppClient {
    /// Every runner registered on `target`, 100 a page. Stops at `MAX_PAGES` pages (10,000
    /// runners) with a warning.
    #[tracing::instrument(skip_all, fields(github.installation = %installation, github.target = %target))]
    pub async fn list_runners(
        &self,
        installation: InstallationId,
        target: &RunnerTarget,
    ) -> Result<Vec<RegisteredRunner>, GitHubError> {
        let mut runners = Vec::new();
        for page in 1..=MAX_PAGES {
            let path = format!(
                "{}/actions/runners?per_page={PER_PAGE}&page={page}",
                target.path()
            );
            let answer: RunnerPage = self
                .as_installation(
                    installation,
                    target,
                    (Endpoint::ListRunners, Method::Get, &path),
                    None,
                )
                .await?
                .json()?;
            let last = answer.runners.len() < PER_PAGE;
            runners.extend(answer.runners.into_iter().map(RegisteredRunner::from));
            if last || runners.len() >= answer.total_count {
                return Ok(runners);
            }
        }
        tracing::warn!(
            pages = MAX_PAGES,
            "stopped listing runners after as many pages; the rest are swept next time"
        );
        Ok(runners)
    }
}
