//! Domain values: parsed once at the edge (the webhook) and trusted afterwards.
//!
//! These types also define the queue envelope's wire schema (see `queue::envelope`):
//! renaming or retyping a field here is a wire change and needs a new envelope version.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

macro_rules! id_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_newtype!(
    /// A workflow job's id: the key jobs are deduplicated by.
    JobId
);
id_newtype!(
    /// A workflow run's id (one run holds many jobs).
    RunId
);
id_newtype!(
    /// A GitHub App installation's id: which org or user's tokens to mint.
    InstallationId
);
id_newtype!(
    /// A self-hosted runner's id as GitHub numbers it.
    RunnerId
);

/// The `X-GitHub-Delivery` id of one webhook delivery; redeliveries keep it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeliveryId(pub String);

impl fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The `action` of a `workflow_job` event: the only ones dockhand acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobAction {
    Queued,
    Waiting,
    InProgress,
    Completed,
}

impl JobAction {
    /// Parses GitHub's action name; `None` for an action dockhand does not know.
    pub fn parse(action: &str) -> Option<Self> {
        match action {
            "queued" => Some(Self::Queued),
            "waiting" => Some(Self::Waiting),
            "in_progress" => Some(Self::InProgress),
            "completed" => Some(Self::Completed),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Waiting => "waiting",
            Self::InProgress => "in_progress",
            Self::Completed => "completed",
        }
    }
}

impl fmt::Display for JobAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job's `status`. GitHub may add statuses; those parse as `Other` instead of failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    InProgress,
    Completed,
    Waiting,
    Requested,
    Pending,
    #[serde(other)]
    Other,
}

/// A finished job's `conclusion`; unknown values parse as `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Conclusion {
    Success,
    Failure,
    Cancelled,
    Skipped,
    TimedOut,
    ActionRequired,
    Neutral,
    Stale,
    StartupFailure,
    #[serde(other)]
    Other,
}

/// Whether a repository's owner is an organization or a user account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OwnerType {
    Organization,
    User,
    #[serde(other)]
    Other,
}

/// The labels a job asks for (`runs-on`), as GitHub sent them. Compare them with
/// [`label_eq`]: GitHub matches labels case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Labels(pub Vec<String>);

impl Labels {
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// GitHub's label comparison: case-insensitive, without allocating for ASCII labels.
pub fn label_eq(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        a.eq_ignore_ascii_case(b)
    } else {
        a.to_lowercase() == b.to_lowercase()
    }
}

/// The repository a job runs for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repository {
    /// `owner/name`.
    pub full_name: String,
    pub owner: String,
    pub owner_type: OwnerType,
}

/// The runner GitHub assigned to a job, present from `in_progress` on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerAssignment {
    pub id: Option<RunnerId>,
    pub name: Option<String>,
    pub group_id: Option<u64>,
    pub group_name: Option<String>,
}

/// One workflow job as a `workflow_job` event describes it.
///
/// The id, run id, status and labels are what a worker acts on; the rest feeds metrics and
/// the job's history only, and older GitHub Enterprise Server payloads may lack it, so it
/// is optional. Optional fields decode when absent; the two that were once required
/// (`run_attempt`, `created_at`) are left out when empty, so an envelope that has them
/// reads the same as before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowJob {
    pub id: JobId,
    pub run_id: RunId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_attempt: Option<u32>,
    pub status: JobStatus,
    #[serde(default)]
    pub conclusion: Option<Conclusion>,
    pub labels: Labels,
    #[serde(default)]
    pub runner: Option<RunnerAssignment>,
    /// When GitHub queued the job: the start of the wait users feel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub completed_at: Option<DateTime<Utc>>,
}

impl WorkflowJob {
    /// From `created_at` to `started_at`: how long the job waited for a runner. `None`
    /// when GitHub sent either timestamp without the other, or they are out of order.
    pub fn wait(&self) -> Option<std::time::Duration> {
        (self.started_at? - self.created_at?).to_std().ok()
    }
}

/// A verified, parsed `workflow_job` delivery: everything the workers need, nothing more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobEvent {
    pub delivery: DeliveryId,
    pub action: JobAction,
    pub job: WorkflowJob,
    pub repository: Repository,
    /// Absent when the webhook is an org or repo hook rather than a GitHub App's.
    pub installation_id: Option<InstallationId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_round_trip_through_their_names() {
        for action in [
            JobAction::Queued,
            JobAction::Waiting,
            JobAction::InProgress,
            JobAction::Completed,
        ] {
            assert_eq!(JobAction::parse(action.as_str()), Some(action));
        }
        assert_eq!(JobAction::parse("requested"), None);
        assert_eq!(JobAction::parse("Queued"), None);
    }

    #[test]
    fn labels_compare_case_insensitively() {
        assert!(label_eq("Self-Hosted", "self-hosted"));
        assert!(label_eq("GPU-Ä", "gpu-ä"));
        assert!(!label_eq("linux", "linux2"));
    }
}
