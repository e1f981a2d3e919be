//! Launch-error classification: what an ECS answer means for the job, from the SDK's own
//! error structure and RunTask's documented `failures[].reason` values, never from searching
//! an error message.

use std::error::Error;

use aws_sdk_ecs::config::http::HttpResponse;
use aws_sdk_ecs::error::{BoxError, DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_ecs::operation::describe_tasks::DescribeTasksError;
use aws_sdk_ecs::operation::list_tasks::ListTasksError;
use aws_sdk_ecs::operation::run_task::RunTaskError;
use aws_sdk_ecs::operation::stop_task::StopTaskError;
use aws_sdk_ecs::types::Failure;

/// Why an ECS call did not give the answer asked for. The worker branches on
/// [`is_transient`](Self::is_transient): transient errors leave the job for a later attempt,
/// the others fail it.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// Every launch option (capacity providers in order, or the launch type) reported no
    /// capacity. Transient: defer.
    #[error("no capacity for the task (tried {})", tried.join(", "))]
    NoCapacity { tried: Vec<String> },
    /// Throttled by the ECS API, after the SDK's own retries. Transient.
    #[error("throttled by the ECS API")]
    Throttled(#[source] BoxError),
    /// No answer, a timeout, an unreadable answer or a 5xx. Transient. After a RunTask the
    /// task may nevertheless exist: look for it with `Launcher::find_task` before launching
    /// again.
    #[error("the ECS API is unavailable")]
    Unavailable(#[source] BoxError),
    /// The request itself is wrong (bad parameters, unknown cluster or task definition,
    /// access denied). Permanent.
    #[error("ECS rejected the request: {reason}")]
    Rejected { reason: String },
}

impl LaunchError {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        !matches!(self, Self::Rejected { .. })
    }

    /// The variant's name for metric labels and log fields: `no_capacity`, `throttled`,
    /// `unavailable` or `rejected`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NoCapacity { .. } => "no_capacity",
            Self::Throttled(_) => "throttled",
            Self::Unavailable(_) => "unavailable",
            Self::Rejected { .. } => "rejected",
        }
    }
}

/// The error code ECS answers a throttled request with (HTTP 400; "Request throttling for the
/// Amazon ECS API"). It is one of AWS's common errors, not part of any operation's model, so
/// it arrives as the `Unhandled` variant, whose `retryable_error_kind()` is always `None`.
/// The SDK's retry classifier recognises throttling by comparing this same parsed code, but
/// its verdict is not kept on the `SdkError` returned once retries are spent. So we compare
/// the code the SDK parsed from the response (`ProvideErrorMetadata::code()`, the
/// `__type`/`x-amzn-errortype` of the answer) for equality: structure, not message text.
const THROTTLING_CODE: &str = "ThrottlingException";

/// What the classification needs from each operation's modelled errors.
pub(crate) trait OperationError:
    ProvideErrorMetadata + Error + Send + Sync + 'static
{
    /// ECS's own fault (`ServerException`): the request may succeed later.
    fn is_server_fault(&self) -> bool;
}

impl OperationError for RunTaskError {
    fn is_server_fault(&self) -> bool {
        self.is_server_exception()
    }
}

impl OperationError for ListTasksError {
    fn is_server_fault(&self) -> bool {
        self.is_server_exception()
    }
}

impl OperationError for DescribeTasksError {
    fn is_server_fault(&self) -> bool {
        self.is_server_exception()
    }
}

impl OperationError for StopTaskError {
    fn is_server_fault(&self) -> bool {
        self.is_server_exception()
    }
}

/// Classifies a failed call by the SDK's structure. Every modelled error other than
/// `ServerException` (`InvalidParameterException`, `ClusterNotFoundException`,
/// `AccessDeniedException`, `ClientException`, `PlatformUnknownException`,
/// `UnsupportedFeatureException`, RunTask's `ConflictException` for a reused client token...)
/// is the request's fault, and so is any other 4xx. The raw HTTP response is dropped: its
/// body can echo the request, and `SdkError`'s `Debug` would print it.
pub(crate) fn classify<E: OperationError>(err: SdkError<E, HttpResponse>) -> LaunchError {
    match err {
        SdkError::ServiceError(context) => {
            let server_error = context.raw().status().is_server_error();
            let err = context.into_err();
            if err.code() == Some(THROTTLING_CODE) {
                LaunchError::Throttled(Box::new(err))
            } else if err.is_server_fault() || server_error {
                LaunchError::Unavailable(Box::new(err))
            } else {
                LaunchError::Rejected {
                    reason: service_reason(&err),
                }
            }
        }
        SdkError::ConstructionFailure(_) => LaunchError::Rejected {
            reason: DisplayErrorContext(&err).to_string(),
        },
        // No answer, a timeout, or an answer that could not be read.
        other => LaunchError::Unavailable(
            other
                .into_source()
                .unwrap_or_else(|e| DisplayErrorContext(&e).to_string().into()),
        ),
    }
}

fn service_reason<E: ProvideErrorMetadata + Error>(err: &E) -> String {
    match (err.code(), err.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_string(),
        _ => DisplayErrorContext(err).to_string(),
    }
}

/// Exact `failures[].reason` values that mean "no room right now" (ECS's "API failure
/// reasons"): the container instance's agent is disconnected, or the capacity provider has
/// no instances.
const CAPACITY_REASONS: &[&str] = &["AGENT", "EMPTY CAPACITY PROVIDER"];

/// Documented reason prefixes that mean the same: `RESOURCE:CPU`, `RESOURCE:MEMORY`,
/// `RESOURCE:ENI`, `RESOURCE:PORTS`, `RESOURCE:GPU`...; Fargate's "Capacity is unavailable
/// at this time. Please try again later or in a different availability zone"; and the
/// account's concurrent-task quota (Fargate and Fargate Spot quotas are separate, so the
/// next provider may still fit, and a finishing task frees room).
const CAPACITY_REASON_PREFIXES: &[&str] = &[
    "RESOURCE:",
    "Capacity is unavailable at this time",
    "You've reached the limit on the number of tasks you can run concurrently",
];

/// Whether a RunTask `failures[].reason` means that this launch option has no capacity now,
/// rather than that the request can never succeed (`MISSING`, `INACTIVE`, `ATTRIBUTE`,
/// `LOCATION` and anything not documented as a capacity problem).
pub(crate) fn is_capacity_reason(reason: &str) -> bool {
    CAPACITY_REASONS.contains(&reason)
        || CAPACITY_REASON_PREFIXES
            .iter()
            .any(|prefix| reason.starts_with(prefix))
}

/// What a RunTask answer without a task says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FailureVerdict {
    /// At least one failure is a capacity problem (on EC2 other instances may fail for
    /// other reasons at the same time): try the next option. Holds every failure, printed.
    Capacity(Vec<String>),
    /// Only failures the request itself causes, printed and joined.
    Rejected(String),
    /// No failures at all: not an answer ECS documents.
    Empty,
}

pub(crate) fn judge_failures(failures: &[Failure]) -> FailureVerdict {
    if failures.is_empty() {
        return FailureVerdict::Empty;
    }
    let printed: Vec<String> = failures.iter().map(print_failure).collect();
    if failures
        .iter()
        .any(|f| f.reason().is_some_and(is_capacity_reason))
    {
        FailureVerdict::Capacity(printed)
    } else {
        FailureVerdict::Rejected(printed.join("; "))
    }
}

fn print_failure(f: &Failure) -> String {
    let mut out = f.reason().unwrap_or("no reason given").to_string();
    if let Some(arn) = f.arn() {
        out.push_str(&format!(" ({arn})"));
    }
    if let Some(detail) = f.detail() {
        out.push_str(&format!(": {detail}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use aws_sdk_ecs::error::{ConnectorError, ErrorMetadata};
    use aws_sdk_ecs::types::error::{
        AccessDeniedException, ClusterNotFoundException, InvalidParameterException, ServerException,
    };

    use super::*;

    fn failure(reason: &str) -> Failure {
        Failure::builder()
            .reason(reason)
            .arn("arn:aws:ecs:us-east-1:123456789012:container-instance/c/1")
            .build()
    }

    #[test]
    fn documented_capacity_reasons_are_capacity() {
        for reason in [
            "RESOURCE:CPU",
            "RESOURCE:MEMORY",
            "RESOURCE:ENI",
            "RESOURCE:PORTS",
            "RESOURCE:GPU",
            "AGENT",
            "EMPTY CAPACITY PROVIDER",
            "Capacity is unavailable at this time. Please try again later or in a different availability zone",
            "You've reached the limit on the number of tasks you can run concurrently",
        ] {
            assert!(is_capacity_reason(reason), "{reason}");
        }
    }

    #[test]
    fn other_failure_reasons_are_the_requests_fault() {
        for reason in [
            "MISSING",
            "INACTIVE",
            "ATTRIBUTE",
            "LOCATION",
            "",
            "resource:cpu",
            "Capacity",
        ] {
            assert!(!is_capacity_reason(reason), "{reason}");
        }
    }

    #[test]
    fn one_capacity_failure_among_others_means_no_capacity() {
        let verdict = judge_failures(&[failure("ATTRIBUTE"), failure("RESOURCE:MEMORY")]);
        let FailureVerdict::Capacity(printed) = verdict else {
            panic!("expected capacity, got {verdict:?}");
        };
        assert_eq!(printed.len(), 2);
        assert!(printed[1].starts_with("RESOURCE:MEMORY (arn:aws:ecs:"));
    }

    #[test]
    fn failures_without_capacity_reasons_are_rejected_with_every_reason() {
        let missing = Failure::builder()
            .reason("MISSING")
            .arn("arn:aws:ecs:us-east-1:123456789012:task-definition/runner:9")
            .detail("task definition not found")
            .build();
        assert_eq!(
            judge_failures(&[missing, failure("INACTIVE")]),
            FailureVerdict::Rejected(
                "MISSING (arn:aws:ecs:us-east-1:123456789012:task-definition/runner:9): task \
                 definition not found; INACTIVE (arn:aws:ecs:us-east-1:123456789012:\
                 container-instance/c/1)"
                    .into()
            )
        );
        assert_eq!(judge_failures(&[]), FailureVerdict::Empty);
    }

    fn response(status: u16) -> HttpResponse {
        HttpResponse::new(status.try_into().unwrap(), "".into())
    }

    fn meta(code: &str, message: &str) -> ErrorMetadata {
        ErrorMetadata::builder().code(code).message(message).build()
    }

    fn service_error(err: RunTaskError, status: u16) -> LaunchError {
        classify(SdkError::service_error(err, response(status)))
    }

    #[test]
    fn modelled_request_errors_are_rejected() {
        let invalid = RunTaskError::InvalidParameterException(
            InvalidParameterException::builder()
                .message("subnet is invalid")
                .meta(meta("InvalidParameterException", "subnet is invalid"))
                .build(),
        );
        let no_cluster = RunTaskError::ClusterNotFoundException(
            ClusterNotFoundException::builder()
                .message("Cluster not found.")
                .meta(meta("ClusterNotFoundException", "Cluster not found."))
                .build(),
        );
        let denied = RunTaskError::AccessDeniedException(
            AccessDeniedException::builder()
                .message("not allowed")
                .meta(meta("AccessDeniedException", "not allowed"))
                .build(),
        );
        let reasons: Vec<String> = [invalid, no_cluster, denied]
            .into_iter()
            .map(|err| match service_error(err, 400) {
                LaunchError::Rejected { reason } => reason,
                other => panic!("expected rejected, got {other:?}"),
            })
            .collect();
        assert_eq!(
            reasons,
            [
                "InvalidParameterException: subnet is invalid",
                "ClusterNotFoundException: Cluster not found.",
                "AccessDeniedException: not allowed",
            ]
        );
    }

    #[test]
    fn throttling_is_recognised_by_its_error_code() {
        let throttled = RunTaskError::generic(meta("ThrottlingException", "Rate exceeded"));
        let err = service_error(throttled, 400);
        assert!(matches!(err, LaunchError::Throttled(_)), "{err:?}");
        assert!(err.is_transient());
        assert_eq!(err.kind(), "throttled");
        // The code decides, not the words.
        let worded = RunTaskError::generic(meta("ValidationException", "Throttling: rate"));
        assert!(matches!(
            service_error(worded, 400),
            LaunchError::Rejected { .. }
        ));
    }

    #[test]
    fn server_faults_are_unavailable() {
        let server = RunTaskError::ServerException(
            ServerException::builder()
                .message("internal")
                .meta(meta("ServerException", "internal"))
                .build(),
        );
        assert!(matches!(
            service_error(server, 500),
            LaunchError::Unavailable(_)
        ));
        let unmodelled = RunTaskError::generic(meta("ServiceUnavailable", "try later"));
        assert!(matches!(
            service_error(unmodelled, 503),
            LaunchError::Unavailable(_)
        ));
        let unknown_4xx = RunTaskError::generic(meta("UnrecognizedClientException", "bad key"));
        assert!(matches!(
            service_error(unknown_4xx, 400),
            LaunchError::Rejected { .. }
        ));
    }

    #[test]
    fn no_answer_is_unavailable_and_a_bad_request_is_rejected() {
        let timeout: SdkError<RunTaskError, HttpResponse> = SdkError::timeout_error("too slow");
        let dispatch: SdkError<RunTaskError, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::io("connection refused".into()));
        let unreadable: SdkError<RunTaskError, HttpResponse> =
            SdkError::response_error("not JSON", response(200));
        for err in [timeout, dispatch, unreadable] {
            let err = classify(err);
            assert!(matches!(err, LaunchError::Unavailable(_)), "{err:?}");
            assert_eq!(err.kind(), "unavailable");
            assert!(err.is_transient());
        }
        let unbuilt: SdkError<RunTaskError, HttpResponse> =
            SdkError::construction_failure("cluster is required");
        let err = classify(unbuilt);
        assert!(matches!(err, LaunchError::Rejected { .. }), "{err:?}");
        assert!(!err.is_transient());
    }

    #[test]
    fn kinds_are_a_closed_set_and_no_capacity_is_transient() {
        let err = LaunchError::NoCapacity {
            tried: vec!["FARGATE_SPOT".into(), "FARGATE".into()],
        };
        assert!(err.is_transient());
        assert_eq!(err.kind(), "no_capacity");
        assert_eq!(
            err.to_string(),
            "no capacity for the task (tried FARGATE_SPOT, FARGATE)"
        );
        let rejected = LaunchError::Rejected {
            reason: "MISSING".into(),
        };
        assert_eq!(rejected.kind(), "rejected");
    }
}
