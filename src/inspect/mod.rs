//! "Why is my job still queued?": a job's story from the store (its row and its history),
//! told in one line and a timeline, and, with `--live`, checked against what GitHub and ECS
//! say now. `dockhand jobs show|list`, `dockhand runners list` and the admin listener's
//! `/jobs` and `/runners` all read it from here.

pub mod headline;
mod live;
pub mod render;

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use live::{Live, LiveClients};

use crate::domain::JobId;
use crate::store::{
    GitHubState, HistoryEntry, JobFilter, JobRecord, LaunchState, Store, StoreError,
};

/// A job as the store knows it, and the line that answers for it.
#[derive(Debug, Clone, Serialize)]
pub struct JobStory {
    pub job_id: JobId,
    /// The store it was read from (its URL, without a password).
    pub store: String,
    /// What became of the job (or why it still waits), in one line.
    pub headline: String,
    /// Its row; `None` for a job known only from its history (no pool served it, or it
    /// waited before any claim).
    pub job: Option<JobRecord>,
    pub history: Vec<HistoryEntry>,
    /// What GitHub and ECS say now, and where they disagree with the store (`--live`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<Live>,
}

impl JobStory {
    /// The job's story, or `None` when the store has neither a row nor a history for it.
    pub async fn load(
        store: &Store,
        store_name: &str,
        job_id: JobId,
        now: DateTime<Utc>,
    ) -> Result<Option<Self>, StoreError> {
        let job = store.job(job_id).await?;
        let history = store.history(job_id).await?;
        let Some(headline) = headline::headline(job.as_ref(), &history, now) else {
            return Ok(None);
        };
        Ok(Some(Self {
            job_id,
            store: store_name.to_string(),
            headline,
            job,
            history,
            live: None,
        }))
    }
}

/// The jobs to list, as `dockhand jobs list` flags or `GET /jobs?...` ask for them.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobQuery {
    /// A launch state (`owed`, `launching`, `launched`, `adopted`, `failed`, `dry_run`,
    /// `waived`) or a GitHub one (`queued`, `in_progress`, `completed`).
    pub state: Option<String>,
    pub pool: Option<String>,
    pub repo: Option<String>,
    /// Received longer ago than this (`2h`, `30m`).
    pub older_than: Option<String>,
    /// Received less long ago than this.
    pub newer_than: Option<String>,
    /// At most this many (default 50, at most 1000).
    pub limit: Option<u32>,
}

/// The most jobs one list shows.
pub const MAX_LIST: u32 = 1000;

impl JobQuery {
    /// The store's filter, or what is wrong with the query, in words.
    pub fn filter(&self, now: DateTime<Utc>) -> Result<JobFilter, String> {
        let mut filter = JobFilter {
            pool: self.pool.clone(),
            repo: self.repo.clone(),
            limit: self.limit.unwrap_or(50),
            ..JobFilter::default()
        };
        if !(1..=MAX_LIST).contains(&filter.limit) {
            return Err(format!("limit must be between 1 and {MAX_LIST}"));
        }
        if let Some(state) = &self.state {
            let launch = LaunchState::parse(state);
            let github = GitHubState::parse(state);
            if launch != LaunchState::Unknown {
                filter.launch = Some(launch);
            } else if github != GitHubState::Unknown {
                filter.github = Some(github);
            } else {
                let names: Vec<&str> = LaunchState::ALL
                    .iter()
                    .map(|s| s.as_str())
                    .chain(GitHubState::ALL.iter().map(|s| s.as_str()))
                    .collect();
                return Err(format!(
                    "unknown state `{state}`: one of {}",
                    names.join(", ")
                ));
            }
        }
        let ago = |value: &Option<String>, key: &str| -> Result<Option<DateTime<Utc>>, String> {
            value
                .as_deref()
                .map(|v| {
                    let d = humantime::parse_duration(v).map_err(|e| {
                        format!("{key}: `{v}` is not a duration like 2h or 30m: {e}")
                    })?;
                    let d = chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
                    Ok(now
                        .checked_sub_signed(d)
                        .unwrap_or(DateTime::<Utc>::MIN_UTC))
                })
                .transpose()
        };
        filter.received_before = ago(&self.older_than, "older_than")?;
        filter.received_after = ago(&self.newer_than, "newer_than")?;
        Ok(filter)
    }
}

/// What an unknown job id is told, naming the store that was searched.
pub fn unknown(job: JobId, store_name: &str) -> String {
    format!(
        "job {job} is not in the store {store_name}: no worker has handled a queued delivery of \
         it. The ingress answers a job no pool serves with `no_matching_pool` and stores \
         nothing; look for its delivery in the ingress's logs (or GitHub's delivery list), and \
         check that this is the store the workers use. A delivery that failed is redelivered \
         within `[redelivery] interval` of the ingress answering again \
         (dockhand_webhook_redeliveries_total)."
    )
}

/// A store URL without its password, to name it.
pub fn store_name(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("redacted"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_is_named_without_its_password() {
        assert_eq!(
            store_name("postgres://dockhand:s3cret@db:5432/dockhand"),
            "postgres://dockhand:redacted@db:5432/dockhand"
        );
        assert_eq!(store_name("sqlite:data/dev.db"), "sqlite:data/dev.db");
    }
}
