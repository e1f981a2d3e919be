//! Which dead-lettered messages a requeue takes, and the guard rails around it.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::DeadLetter;

/// Which dead-lettered messages to requeue. An empty filter matches everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub job_ids: Vec<u64>,
    /// `owner/name`, compared case-insensitively as GitHub does.
    pub repos: Vec<String>,
    pub actions: Vec<String>,
    pub older_than: Option<Duration>,
    pub newer_than: Option<Duration>,
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.job_ids.is_empty()
            && self.repos.is_empty()
            && self.actions.is_empty()
            && self.older_than.is_none()
            && self.newer_than.is_none()
    }

    pub fn matches(&self, entry: &DeadLetter, now: DateTime<Utc>) -> bool {
        let age = entry.age(now);
        (self.job_ids.is_empty() || entry.job_id.is_some_and(|id| self.job_ids.contains(&id)))
            && (self.repos.is_empty()
                || entry
                    .repo
                    .as_ref()
                    .is_some_and(|r| self.repos.iter().any(|f| f.eq_ignore_ascii_case(r))))
            && (self.actions.is_empty()
                || entry
                    .action
                    .as_ref()
                    .is_some_and(|a| self.actions.contains(a)))
            && self
                .older_than
                .is_none_or(|limit| age.is_some_and(|a| a > limit))
            && self
                .newer_than
                .is_none_or(|limit| age.is_some_and(|a| a < limit))
    }
}

/// What to requeue, and the guard rails.
#[derive(Debug, Clone)]
pub struct Selection {
    pub filter: Filter,
    /// Every message (the filter must then be empty).
    pub all: bool,
    /// At most this many, the first found.
    pub max: Option<usize>,
    /// Skip messages already requeued this many times...
    pub max_requeues: u32,
    /// ...unless forced.
    pub force: bool,
}

/// Why a requeue was refused before it touched the queue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "refusing to requeue without a filter: pass --all to requeue every dead-lettered \
         message, or choose with --job-id, --repo, --action, --older-than, --newer-than or --max"
    )]
    NoFilter,
    #[error(
        "refusing to requeue without confirmation: stdin is not a terminal, so pass --yes \
         (see what would move with --dry-run first)"
    )]
    NotConfirmed,
}

impl Selection {
    /// Refuses a selection that names nothing: requeueing everything must be asked for.
    pub fn check(&self) -> Result<(), Refusal> {
        if self.filter.is_empty() && !self.all && self.max.is_none() {
            return Err(Refusal::NoFilter);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dlq::message::tests::dead;

    #[test]
    fn filters_combine_and_compare_repos_case_insensitively() {
        let mut entry = dead(&[("job-id", "12"), ("action", "queued")], "x", 90);
        entry.repo = Some("Octo/Hello".into());
        let now = Utc::now();
        let filter = |f: Filter| f.matches(&entry, now);
        assert!(filter(Filter::default()));
        assert!(filter(Filter {
            repos: vec!["octo/hello".into()],
            job_ids: vec![3, 12],
            ..Filter::default()
        }));
        assert!(!filter(Filter {
            repos: vec!["octo/hello".into()],
            actions: vec!["completed".into()],
            ..Filter::default()
        }));
        let hour = Duration::from_secs(3600);
        assert!(filter(Filter {
            older_than: Some(hour),
            ..Filter::default()
        }));
        assert!(!filter(Filter {
            newer_than: Some(hour),
            ..Filter::default()
        }));
    }

    #[test]
    fn a_selection_must_name_something() {
        let mut selection = Selection {
            filter: Filter::default(),
            all: false,
            max: None,
            max_requeues: 3,
            force: false,
        };
        assert_eq!(selection.check(), Err(Refusal::NoFilter));
        selection.max = Some(5);
        assert_eq!(selection.check(), Ok(()));
        selection.max = None;
        selection.all = true;
        assert_eq!(selection.check(), Ok(()));
    }
}
