//! Asking GitHub for redeliveries: each due event once, paced, given up after
//! `max_attempts` or a refusal for good; held back while its App's webhook looks down,
//! but for one probe per App that does not count against the event's attempts.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::{MAX_ASKS_PER_PASS, Recovery, RecoveryPass};
use crate::github::GitHubError;
use crate::metrics as m;
use crate::store::DueRedelivery;
use crate::telemetry::chain;

fn count(outcome: &'static str) {
    metrics::counter!(m::WEBHOOK_REDELIVERIES_TOTAL, "outcome" => outcome).increment(1);
}

impl Recovery {
    /// Asks for every due event, until `shutdown` or GitHub's rate limit. `down` says, for
    /// each App whose log was read this pass, whether its webhook looks down; an App whose
    /// log could not be read is asked nothing (GitHub would most likely refuse).
    pub(super) async fn ask_due(
        &self,
        since: DateTime<Utc>,
        down: &HashMap<u64, bool>,
        shutdown: &CancellationToken,
        pass: &mut RecoveryPass,
    ) -> anyhow::Result<()> {
        let inner = &*self.0;
        let stale_before = self.stale_before();
        let mut probed = HashSet::new();
        for due in inner
            .store
            .due_redeliveries(since, stale_before, MAX_ASKS_PER_PASS)
            .await?
        {
            if shutdown.is_cancelled() {
                break;
            }
            let probe = match down.get(&due.app_id) {
                None => continue,
                Some(false) => false,
                Some(true) if probed.insert(due.app_id) => true,
                Some(true) => {
                    pass.held += 1;
                    continue;
                }
            };
            if !self.ask(&due, probe, stale_before, shutdown, pass).await? {
                break;
            }
        }
        if pass.held > 0 {
            tracing::info!(
                held = pass.held,
                probes = pass.probes,
                "a GitHub App's webhook still fails its newest deliveries; holding its \
                 redeliveries back but for one probe"
            );
        }
        Ok(())
    }

    /// Asks for one event's redelivery, or gives it up after `max_attempts`. A `probe`
    /// does not count against them. False when the pass should ask for no more (GitHub's
    /// rate limit, or shutdown).
    async fn ask(
        &self,
        due: &DueRedelivery,
        probe: bool,
        stale_before: DateTime<Utc>,
        shutdown: &CancellationToken,
        pass: &mut RecoveryPass,
    ) -> anyhow::Result<bool> {
        let inner = &*self.0;
        if due.attempts >= inner.settings.max_attempts {
            if inner.store.redelivery_given_up(&due.guid).await? {
                pass.exhausted += 1;
                count("exhausted");
                tracing::warn!(
                    github.app = due.app_id,
                    github.delivery_guid = %due.guid,
                    webhook.action = due.action.as_deref(),
                    attempts = due.attempts,
                    first_failed_at = %due.first_failed_at,
                    "gave up redelivering a webhook: every redelivery failed"
                );
            }
            return Ok(true);
        }
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return Ok(false),
            () = inner.pacer.ready() => {}
        }
        let counts = !probe;
        if !inner
            .store
            .claim_redelivery(&due.guid, due.delivery_id, stale_before, counts)
            .await?
        {
            return Ok(true);
        }
        // Not raced with the shutdown: an ask taken must be made, or handed back.
        match inner.github.redeliver(due.app_id, due.delivery_id).await {
            Ok(()) => {
                pass.requested += 1;
                pass.probes += usize::from(probe);
                count("requested");
                tracing::info!(
                    github.app = due.app_id,
                    github.delivery = due.delivery_id,
                    github.delivery_guid = %due.guid,
                    webhook.action = due.action.as_deref(),
                    attempt = due.attempts + u32::from(counts),
                    probe,
                    "asked GitHub to deliver a failed webhook again"
                );
                Ok(true)
            }
            Err(err) => {
                pass.refused += 1;
                count("refused");
                let for_good = matches!(
                    err,
                    GitHubError::NotFound
                        | GitHubError::Validation { .. }
                        | GitHubError::Conflict
                        | GitHubError::Unexpected { .. }
                );
                if for_good {
                    inner.store.redelivery_given_up(&due.guid).await?;
                    pass.exhausted += 1;
                    count("exhausted");
                } else {
                    inner
                        .store
                        .release_redelivery(&due.guid, due.delivery_id, counts)
                        .await?;
                }
                tracing::warn!(
                    github.app = due.app_id,
                    github.delivery = due.delivery_id,
                    github.delivery_guid = %due.guid,
                    error = %chain(&err),
                    given_up = for_good,
                    "GitHub refused to deliver a failed webhook again"
                );
                Ok(!matches!(err, GitHubError::RateLimited { .. }))
            }
        }
    }
}
