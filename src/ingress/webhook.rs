//! Parsing a `workflow_job` delivery into a [`JobEvent`]. Reasons for refusal name the
//! field at fault but never quote the body.
//!
//! Only what a worker needs to act on the action is required: `action`, `workflow_job.id`,
//! `.run_id`, `.status` and `.labels`, and `repository.full_name` and `.owner.login`.
//! The rest (timestamps, `run_attempt`, the runner, `conclusion`, the installation) feeds
//! metrics and history; older GitHub Enterprise Server payloads lack some of it, and a
//! missing one leaves its metric unrecorded rather than losing the job to a 400.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_path_to_error::Segment;

use crate::domain::{
    Conclusion, DeliveryId, InstallationId, JobAction, JobEvent, JobId, JobStatus, Labels,
    OwnerType, Repository, RunId, RunnerAssignment, RunnerId, WorkflowJob,
};

/// What a well-formed delivery turned out to be.
#[derive(Debug)]
pub enum Parsed {
    Job(Box<JobEvent>),
    /// A `workflow_job` action dockhand has no use for (GitHub adds new ones).
    UnknownAction,
}

/// Why a delivery's body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("body is empty")]
    Empty,
    #[error("body is not valid UTF-8")]
    NotUtf8,
    #[error("body is not valid JSON")]
    Syntax,
    #[error("body must be a JSON object")]
    NotAnObject,
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    #[error("field `{0}` has the wrong type or value")]
    InvalidField(String),
    #[error("too many labels: {count} (at most {max})")]
    TooManyLabels { count: usize, max: usize },
    #[error("form-encoded delivery without a `payload` field")]
    FormWithoutPayload,
}

#[derive(Deserialize)]
struct RawEvent {
    action: Option<String>,
    workflow_job: Option<RawJob>,
    repository: Option<RawRepository>,
    installation: Option<RawInstallation>,
}

#[derive(Deserialize)]
struct RawJob {
    id: Option<u64>,
    run_id: Option<u64>,
    run_attempt: Option<u32>,
    status: Option<JobStatus>,
    conclusion: Option<Conclusion>,
    labels: Option<Vec<String>>,
    runner_id: Option<u64>,
    runner_name: Option<String>,
    runner_group_id: Option<u64>,
    runner_group_name: Option<String>,
    created_at: Option<DateTime<Utc>>,
    started_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
struct RawRepository {
    full_name: Option<String>,
    owner: Option<RawOwner>,
}

#[derive(Deserialize)]
struct RawOwner {
    login: Option<String>,
    #[serde(rename = "type")]
    kind: Option<OwnerType>,
}

#[derive(Deserialize)]
struct RawInstallation {
    id: Option<u64>,
}

/// Parses a JSON `workflow_job` body. `max_labels` caps `workflow_job.labels`.
pub fn parse_workflow_job(
    body: &[u8],
    delivery: DeliveryId,
    max_labels: usize,
) -> Result<Parsed, ParseError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ParseError::Empty);
    }
    if std::str::from_utf8(body).is_err() {
        return Err(ParseError::NotUtf8);
    }
    // serde's derived structs also accept a JSON array of the fields in order; GitHub
    // never sends one, so refuse anything but an object up front.
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(ParseError::NotAnObject);
    }
    let raw: RawEvent = serde_json::from_slice(body).map_err(|_| explain(body))?;
    let action = raw.action.ok_or(ParseError::MissingField("action"))?;
    let Some(action) = JobAction::parse(&action) else {
        return Ok(Parsed::UnknownAction);
    };
    let job = raw
        .workflow_job
        .ok_or(ParseError::MissingField("workflow_job"))?;
    let labels = job
        .labels
        .ok_or(ParseError::MissingField("workflow_job.labels"))?;
    if labels.len() > max_labels {
        return Err(ParseError::TooManyLabels {
            count: labels.len(),
            max: max_labels,
        });
    }
    let repo = raw
        .repository
        .ok_or(ParseError::MissingField("repository"))?;
    let owner = repo
        .owner
        .ok_or(ParseError::MissingField("repository.owner"))?;
    let runner = (job.runner_id.is_some() || job.runner_name.is_some()).then(|| RunnerAssignment {
        id: job.runner_id.map(RunnerId),
        name: job.runner_name,
        group_id: job.runner_group_id,
        group_name: job.runner_group_name,
    });
    Ok(Parsed::Job(Box::new(JobEvent {
        delivery,
        action,
        job: WorkflowJob {
            id: JobId(job.id.ok_or(ParseError::MissingField("workflow_job.id"))?),
            run_id: RunId(
                job.run_id
                    .ok_or(ParseError::MissingField("workflow_job.run_id"))?,
            ),
            run_attempt: job.run_attempt,
            status: job
                .status
                .ok_or(ParseError::MissingField("workflow_job.status"))?,
            conclusion: job.conclusion,
            labels: Labels(labels),
            runner,
            created_at: job.created_at,
            started_at: job.started_at,
            completed_at: job.completed_at,
        },
        repository: Repository {
            full_name: repo
                .full_name
                .ok_or(ParseError::MissingField("repository.full_name"))?,
            owner: owner
                .login
                .ok_or(ParseError::MissingField("repository.owner.login"))?,
            owner_type: owner.kind.unwrap_or(OwnerType::Other),
        },
        installation_id: raw.installation.and_then(|i| i.id).map(InstallationId),
    })))
}

/// Extracts the JSON from a form-encoded delivery (`payload=<urlencoded JSON>`), which
/// GitHub sends when a webhook's content type is `application/x-www-form-urlencoded`.
pub fn form_payload(body: &[u8]) -> Result<Vec<u8>, ParseError> {
    form_urlencoded::parse(body)
        .find(|(key, _)| key == "payload")
        .map(|(_, value)| value.into_owned().into_bytes())
        .ok_or(ParseError::FormWithoutPayload)
}

/// Runs the failed parse again, slowly, to say which field was at fault. Only the path is
/// kept: serde's own message can quote the offending value.
fn explain(body: &[u8]) -> ParseError {
    let mut de = serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize::<_, RawEvent>(&mut de) {
        Ok(_) => ParseError::Syntax,
        Err(err) => match err.inner().classify() {
            serde_json::error::Category::Data => ParseError::InvalidField(field_path(err.path())),
            _ => ParseError::Syntax,
        },
    }
}

/// The path as serde_path_to_error prints it (`workflow_job.labels[3]`), cut at the field
/// that holds an enum: the variant segment is the body's own text, from an enum field given
/// as an object (`"status": {"<anything>": 1}`). The other keys are `RawEvent`'s field names.
fn field_path(path: &serde_path_to_error::Path) -> String {
    let mut out = String::new();
    for segment in path {
        let key = match segment {
            Segment::Seq { index } => {
                out.push_str(&format!("[{index}]"));
                continue;
            }
            Segment::Map { key } => key.as_str(),
            Segment::Unknown => "?",
            Segment::Enum { .. } => break,
        };
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(key);
    }
    if out.is_empty() {
        out.push('.');
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::synthetic::{SyntheticJob, workflow_job_payload};

    fn parse(value: &serde_json::Value) -> Result<Parsed, ParseError> {
        parse_workflow_job(
            value.to_string().as_bytes(),
            DeliveryId("d-1".to_string()),
            64,
        )
    }

    fn job_event(value: &serde_json::Value) -> JobEvent {
        match parse(value).unwrap() {
            Parsed::Job(event) => *event,
            Parsed::UnknownAction => panic!("unexpected unknown action"),
        }
    }

    #[test]
    fn a_realistic_queued_payload_parses_into_typed_values() {
        let spec = SyntheticJob {
            job_id: 29679449,
            run_id: 10951915,
            labels: vec!["self-hosted".into(), "linux".into()],
            repo: "octo-org/example-workflow".into(),
            installation_id: Some(42),
            ..SyntheticJob::default()
        };
        let event = job_event(&workflow_job_payload(&spec));
        assert_eq!(event.action, JobAction::Queued);
        assert_eq!(event.job.id, JobId(29679449));
        assert_eq!(event.job.run_id, RunId(10951915));
        assert_eq!(event.job.run_attempt, Some(1));
        assert_eq!(event.job.status, JobStatus::Queued);
        assert_eq!(event.job.labels.0, ["self-hosted", "linux"]);
        assert_eq!(event.job.runner, None);
        assert_eq!(event.repository.full_name, "octo-org/example-workflow");
        assert_eq!(event.repository.owner, "octo-org");
        assert_eq!(event.repository.owner_type, OwnerType::Organization);
        assert_eq!(event.installation_id, Some(InstallationId(42)));
        assert_eq!(event.delivery.0, "d-1");
    }

    #[test]
    fn a_completed_payload_carries_runner_and_conclusion() {
        let spec = SyntheticJob {
            action: "completed".into(),
            ..SyntheticJob::default()
        };
        let event = job_event(&workflow_job_payload(&spec));
        assert_eq!(event.action, JobAction::Completed);
        assert_eq!(event.job.conclusion, Some(Conclusion::Success));
        let runner = event.job.runner.unwrap();
        assert_eq!(runner.id, Some(RunnerId(7)));
        assert!(runner.name.is_some());
        assert!(event.job.completed_at.is_some());
    }

    #[test]
    fn unknown_actions_and_statuses_do_not_fail() {
        let mut v = workflow_job_payload(&SyntheticJob::default());
        v["action"] = json!("escalated");
        assert!(matches!(parse(&v), Ok(Parsed::UnknownAction)));
        let mut v = workflow_job_payload(&SyntheticJob::default());
        v["workflow_job"]["status"] = json!("teleporting");
        assert_eq!(job_event(&v).job.status, JobStatus::Other);
    }

    #[test]
    fn bad_bodies_get_short_reasons_that_never_quote_the_body() {
        let secretish = "do-not-echo-me";
        let mut labels_not_list = workflow_job_payload(&SyntheticJob::default());
        labels_not_list["workflow_job"]["labels"] = json!(secretish);
        let mut id_string = workflow_job_payload(&SyntheticJob::default());
        id_string["workflow_job"]["id"] = json!(secretish);
        // An enum given as an object is read as `{variant: value}`: the key is the body's.
        let mut status_object = workflow_job_payload(&SyntheticJob::default());
        status_object["workflow_job"]["status"] = json!({ secretish: 1 });
        let cases: Vec<(Vec<u8>, ParseError)> = vec![
            (b"".to_vec(), ParseError::Empty),
            (b"  \n".to_vec(), ParseError::Empty),
            (b"{\"a\": \"\xff\xfe\"}".to_vec(), ParseError::NotUtf8),
            (
                format!("{{\"action\": \"{secretish}").into_bytes(),
                ParseError::Syntax,
            ),
            (
                format!("[\"{secretish}\"]").into_bytes(),
                ParseError::NotAnObject,
            ),
            // Well-typed fields in order would satisfy serde's sequence form of a struct.
            (
                br#"["queued", {"id": 1}, {"full_name": "a/b"}, null]"#.to_vec(),
                ParseError::NotAnObject,
            ),
            (b"42".to_vec(), ParseError::NotAnObject),
            (
                labels_not_list.to_string().into_bytes(),
                ParseError::InvalidField("workflow_job.labels".into()),
            ),
            (
                id_string.to_string().into_bytes(),
                ParseError::InvalidField("workflow_job.id".into()),
            ),
            (
                status_object.to_string().into_bytes(),
                ParseError::InvalidField("workflow_job.status".into()),
            ),
        ];
        for (body, expected) in cases {
            let err = parse_workflow_job(&body, DeliveryId("d".into()), 64).unwrap_err();
            assert_eq!(err, expected);
            assert!(!err.to_string().contains(secretish), "{err}");
        }
    }

    #[test]
    fn required_fields_are_named_when_missing() {
        for (pointer, field) in [
            ("/workflow_job/id", "workflow_job.id"),
            ("/workflow_job/labels", "workflow_job.labels"),
            ("/workflow_job/run_id", "workflow_job.run_id"),
            ("/workflow_job/status", "workflow_job.status"),
            ("/workflow_job", "workflow_job"),
            ("/repository", "repository"),
            ("/repository/owner", "repository.owner"),
            ("/repository/owner/login", "repository.owner.login"),
            ("/repository/full_name", "repository.full_name"),
            ("/action", "action"),
        ] {
            let mut v = workflow_job_payload(&SyntheticJob::default());
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            let parent = if parent.is_empty() {
                &mut v
            } else {
                v.pointer_mut(parent).unwrap()
            };
            parent.as_object_mut().unwrap().remove(key).unwrap();
            assert_eq!(parse(&v).unwrap_err(), ParseError::MissingField(field));
        }
    }

    #[test]
    fn fields_for_metrics_and_history_may_be_missing() {
        for action in ["queued", "waiting", "in_progress", "completed"] {
            let mut v = workflow_job_payload(&SyntheticJob {
                action: action.into(),
                ..SyntheticJob::default()
            });
            let job = v["workflow_job"].as_object_mut().unwrap();
            for key in [
                "run_attempt",
                "created_at",
                "started_at",
                "completed_at",
                "conclusion",
                "runner_id",
                "runner_name",
                "runner_group_id",
                "runner_group_name",
            ] {
                job.remove(key);
            }
            v.as_object_mut().unwrap().remove("installation");
            v["repository"]["owner"]
                .as_object_mut()
                .unwrap()
                .remove("type");
            let event = job_event(&v);
            assert_eq!(event.action.as_str(), action);
            assert_eq!(event.job.run_attempt, None);
            assert_eq!(event.job.created_at, None);
            assert_eq!(event.job.started_at, None);
            assert_eq!(event.job.wait(), None);
            assert_eq!(event.job.conclusion, None);
            assert_eq!(event.job.runner, None);
            assert_eq!(event.installation_id, None);
            assert_eq!(event.repository.owner_type, OwnerType::Other);
        }
    }

    #[test]
    fn the_wait_needs_both_timestamps_in_order() {
        let mut v = workflow_job_payload(&SyntheticJob {
            action: "in_progress".into(),
            ..SyntheticJob::default()
        });
        v["workflow_job"]["created_at"] = json!("2024-05-01T10:00:00Z");
        v["workflow_job"]["started_at"] = json!("2024-05-01T10:00:42Z");
        assert_eq!(
            job_event(&v).job.wait(),
            Some(std::time::Duration::from_secs(42))
        );
        v["workflow_job"]["started_at"] = json!("2024-05-01T09:59:00Z");
        assert_eq!(job_event(&v).job.wait(), None);
    }

    #[test]
    fn labels_are_capped() {
        let mut v = workflow_job_payload(&SyntheticJob::default());
        v["workflow_job"]["labels"] = json!((0..65).map(|i| format!("l{i}")).collect::<Vec<_>>());
        assert_eq!(
            parse(&v).unwrap_err(),
            ParseError::TooManyLabels { count: 65, max: 64 }
        );
    }

    #[test]
    fn form_deliveries_yield_their_payload() {
        let json = r#"{"action":"queued","x":"a&b=c"}"#;
        let body: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", json)
            .finish();
        assert_eq!(form_payload(body.as_bytes()).unwrap(), json.as_bytes());
        assert_eq!(
            form_payload(b"other=1").unwrap_err(),
            ParseError::FormWithoutPayload
        );
    }
}
