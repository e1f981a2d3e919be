//! Runner groups by name: an organization's pool names its group, GitHub's JIT endpoint
//! wants its id. Looked up by paging through the org's groups once, then cached for the
//! process's life (ids do not change; a JIT 404 drops the entry in case the group was
//! deleted).

use serde::Deserialize;

use super::request::{Endpoint, Method, segment};
use super::{AppClient, GitHubError, MAX_PAGES, PER_PAGE, RunnerTarget};
use crate::domain::InstallationId;

#[derive(Deserialize)]
struct RunnerGroupPage {
    total_count: usize,
    runner_groups: Vec<RunnerGroup>,
}

#[derive(Deserialize)]
struct RunnerGroup {
    id: u64,
    name: String,
}

impl AppClient {
    /// The id of `org`'s runner group called `name`: from the cache, or by paging through
    /// the org's groups (every group seen on the way is cached too).
    pub(super) async fn runner_group_id(
        &self,
        installation: InstallationId,
        org: &str,
        name: &str,
    ) -> Result<u64, GitHubError> {
        let key = (org.to_owned(), name.to_owned());
        if let Some(id) = self.lock_groups().get(&key) {
            return Ok(*id);
        }
        let target = RunnerTarget::Org(org.to_owned());
        let mut seen = 0;
        for page in 1..=MAX_PAGES {
            let path = format!(
                "/orgs/{}/actions/runner-groups?per_page={PER_PAGE}&page={page}",
                segment(org)
            );
            let answer: RunnerGroupPage = self
                .as_installation(
                    installation,
                    &target,
                    (Endpoint::RunnerGroups, Method::Get, &path),
                    None,
                )
                .await?
                .json()?;
            seen += answer.runner_groups.len();
            let last = answer.runner_groups.len() < PER_PAGE || seen >= answer.total_count;
            let mut found = None;
            {
                let mut cache = self.lock_groups();
                for group in answer.runner_groups {
                    if group.name == name {
                        found = Some(group.id);
                    }
                    cache.insert((org.to_owned(), group.name), group.id);
                }
            }
            if let Some(id) = found {
                return Ok(id);
            }
            if last {
                break;
            }
        }
        tracing::warn!(
            github.org = org,
            runner.group = name,
            "the organization has no runner group of that name"
        );
        Err(GitHubError::NotFound)
    }
}
