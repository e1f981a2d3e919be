//! The versioned message that travels from ingress to workers: the parsed event, not
//! GitHub's raw payload (a few hundred bytes instead of 10-25 KB, and nothing a worker
//! would have to re-validate).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Attributes, OutgoingMessage};
use crate::domain::JobEvent;

/// The envelope version this build writes and reads.
const VERSION: u32 = 1;

/// Attribute names on every message, readable without parsing the body.
pub const ATTR_JOB_ID: &str = "job-id";
pub const ATTR_ACTION: &str = "action";
pub const ATTR_VERSION: &str = "envelope-version";

/// Version 1 of the envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The envelope version: always 1 when written by this build.
    pub v: u32,
    /// When the ingress accepted the delivery: the start of dockhand's own latency.
    pub received_at: DateTime<Utc>,
    /// The pool the ingress matched for a `queued` job; workers match again against their
    /// own (possibly newer) pool config.
    pub pool: Option<String>,
    pub event: JobEvent,
}

/// Why a message body is not an envelope this build can handle. Both are permanent: the
/// same body will fail the same way on every delivery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("message body is not a dockhand envelope")]
    Malformed,
    #[error("unsupported envelope version {0} (this build reads {VERSION})")]
    UnsupportedVersion(u64),
}

#[derive(Deserialize)]
struct VersionOnly {
    v: u64,
}

impl Envelope {
    pub fn new(event: JobEvent, pool: Option<String>, received_at: DateTime<Utc>) -> Self {
        Self {
            v: VERSION,
            received_at,
            pool,
            event,
        }
    }

    pub fn to_message(&self) -> OutgoingMessage {
        let body = serde_json::to_string(self).expect("an envelope always serializes");
        let attributes = Attributes::from([
            (ATTR_JOB_ID.to_string(), self.event.job.id.to_string()),
            (
                ATTR_ACTION.to_string(),
                self.event.action.as_str().to_string(),
            ),
            (ATTR_VERSION.to_string(), self.v.to_string()),
        ]);
        OutgoingMessage {
            body,
            attributes,
            delay: std::time::Duration::ZERO,
        }
    }

    /// Reads a message body, checking the version before the rest.
    pub fn decode(body: &str) -> Result<Self, EnvelopeError> {
        let version: VersionOnly =
            serde_json::from_str(body).map_err(|_| EnvelopeError::Malformed)?;
        if version.v != u64::from(VERSION) {
            return Err(EnvelopeError::UnsupportedVersion(version.v));
        }
        serde_json::from_str(body).map_err(|_| EnvelopeError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingress::webhook::{Parsed, parse_workflow_job};
    use crate::synthetic::{SyntheticJob, workflow_job_payload};

    fn event(action: &str) -> JobEvent {
        let body = workflow_job_payload(&SyntheticJob {
            action: action.into(),
            installation_id: Some(9),
            ..SyntheticJob::default()
        })
        .to_string();
        match parse_workflow_job(body.as_bytes(), crate::domain::DeliveryId("d".into()), 64)
            .unwrap()
        {
            Parsed::Job(e) => *e,
            Parsed::UnknownAction => unreachable!(),
        }
    }

    #[test]
    fn envelopes_round_trip_for_every_action() {
        for action in ["queued", "waiting", "in_progress", "completed"] {
            let envelope = Envelope::new(event(action), Some("linux".into()), Utc::now());
            let message = envelope.to_message();
            assert_eq!(Envelope::decode(&message.body).unwrap(), envelope);
            assert_eq!(message.attributes[ATTR_ACTION], action);
            assert_eq!(message.attributes[ATTR_JOB_ID], "2832853555");
            assert_eq!(message.attributes[ATTR_VERSION], "1");
        }
    }

    /// A `completed` envelope exactly as the ingress wrote it before GitHub's timestamps
    /// and `run_attempt` became optional.
    const WRITTEN_BY_AN_OLDER_INGRESS: &str = r#"{"v":1,"received_at":"2024-05-01T10:01:00Z","pool":"linux","event":{"delivery":"d-7","action":"completed","job":{"id":7,"run_id":70,"run_attempt":2,"status":"completed","conclusion":"success","labels":["self-hosted","linux"],"runner":{"id":3,"name":"dockhand-linux-7-1","group_id":1,"group_name":"Default"},"created_at":"2024-05-01T10:00:00Z","started_at":"2024-05-01T10:00:30Z","completed_at":"2024-05-01T10:05:00Z"},"repository":{"full_name":"octo-org/hello","owner":"octo-org","owner_type":"Organization"},"installation_id":9}}"#;

    #[test]
    fn an_envelope_written_by_an_older_ingress_still_decodes_and_reads_the_same_again() {
        let envelope = Envelope::decode(WRITTEN_BY_AN_OLDER_INGRESS).unwrap();
        let job = &envelope.event.job;
        assert_eq!(job.run_attempt, Some(2));
        assert_eq!(
            job.created_at,
            Some("2024-05-01T10:00:00Z".parse().unwrap())
        );
        assert_eq!(job.wait(), Some(std::time::Duration::from_secs(30)));
        assert_eq!(job.conclusion, Some(crate::domain::Conclusion::Success));
        let rewritten: serde_json::Value =
            serde_json::from_str(&envelope.to_message().body).unwrap();
        let original: serde_json::Value =
            serde_json::from_str(WRITTEN_BY_AN_OLDER_INGRESS).unwrap();
        assert_eq!(rewritten, original, "the wire shape is unchanged");
    }

    #[test]
    fn an_envelope_without_the_optional_fields_decodes_with_them_empty() {
        let mut value: serde_json::Value =
            serde_json::from_str(WRITTEN_BY_AN_OLDER_INGRESS).unwrap();
        let job = value["event"]["job"].as_object_mut().unwrap();
        for key in [
            "run_attempt",
            "conclusion",
            "runner",
            "created_at",
            "started_at",
            "completed_at",
        ] {
            job.remove(key).unwrap();
        }
        value["event"]
            .as_object_mut()
            .unwrap()
            .remove("installation_id");
        let envelope = Envelope::decode(&value.to_string()).unwrap();
        let job = &envelope.event.job;
        assert_eq!(
            (
                job.run_attempt,
                job.created_at,
                job.started_at,
                job.completed_at
            ),
            (None, None, None, None)
        );
        assert_eq!((job.conclusion, &job.runner), (None, &None));
        assert_eq!(envelope.event.installation_id, None);
        // Written again, the empty fields that were once required stay absent.
        let message = envelope.to_message();
        assert!(!message.body.contains("created_at"), "{}", message.body);
        assert!(!message.body.contains("run_attempt"), "{}", message.body);
        assert_eq!(Envelope::decode(&message.body).unwrap(), envelope);
    }

    #[test]
    fn the_envelope_is_small() {
        let message = Envelope::new(event("completed"), None, Utc::now()).to_message();
        assert!(message.body.len() < 1024, "{}", message.body.len());
    }

    #[test]
    fn other_versions_and_garbage_are_refused() {
        let mut value =
            serde_json::to_value(Envelope::new(event("queued"), None, Utc::now())).unwrap();
        value["v"] = serde_json::json!(2);
        assert_eq!(
            Envelope::decode(&value.to_string()),
            Err(EnvelopeError::UnsupportedVersion(2))
        );
        assert_eq!(Envelope::decode("{}"), Err(EnvelopeError::Malformed));
        assert_eq!(Envelope::decode("not json"), Err(EnvelopeError::Malformed));
        assert_eq!(
            Envelope::decode(r#"{"v":1}"#),
            Err(EnvelopeError::Malformed)
        );
    }
}
