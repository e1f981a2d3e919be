//! The ECS launcher against moto: the tasks it creates, the capacity fallback (with a
//! fault-injecting proxy, since moto never runs out of capacity), adopting and stopping.

use crate::common;

use std::time::Duration;

use aws_sdk_ecs::config::retry::RetryConfig;
use aws_sdk_ecs::types::Task;
use common::moto_ecs::faults::{Call, FARGATE_NO_CAPACITY, FaultyEcs};
use common::moto_ecs::{
    MotoEcs, RUNNER_CONTAINER, network_interface_groups, register_container_instance,
};
use common::{moto_aws, sample};
use dockhand::config::pool::JIT_CONFIG_ENV;
use dockhand::config::{EcsLaunchSettings, LaunchType};
use dockhand::domain::JobId;
use dockhand::ecs::Placement;

/// Launches in these tests use the pool's capacity providers as configured.
static NO_PLACEMENT: Placement = Placement {
    after: None,
    on_demand: false,
};
use dockhand::ecs::{LaunchError, LaunchSpec, Launcher, TAG_JOB_ID, TAG_POOL, TAG_RUNNER};
use secrecy::SecretString;

mod find_task;

const POOL: &str = "linux-x64";

/// The owned parts of a LaunchSpec for one job.
struct Job {
    id: u64,
    runner: String,
    jit: SecretString,
    token: String,
    started_by: String,
}

impl Job {
    fn new() -> Self {
        let id = u64::from(uuid::Uuid::new_v4().as_fields().0);
        Self {
            id,
            runner: format!("dockhand-{POOL}-{id}"),
            jit: SecretString::from(format!("jit-config-for-{id}")),
            token: format!("dockhand-{id}-1"),
            started_by: format!("dockhand/job/{id}"),
        }
    }

    fn spec<'a>(&'a self, ecs: &'a EcsLaunchSettings) -> LaunchSpec<'a> {
        LaunchSpec {
            pool: POOL,
            ecs,
            job_id: Some(JobId(self.id)),
            runner_name: &self.runner,
            jit_config: &self.jit,
            client_token: &self.token,
            started_by: &self.started_by,
            placement: &NO_PLACEMENT,
        }
    }

    fn jit(&self) -> String {
        format!("jit-config-for-{}", self.id)
    }
}

async fn launcher() -> Launcher {
    Launcher::new(moto_aws().ecs_client().await)
}

/// A launcher whose ECS calls go through `proxy`; retries back off briefly.
async fn launcher_through(proxy: &FaultyEcs) -> Launcher {
    let client = proxy.aws_settings().ecs_client().await;
    let config = client
        .config()
        .to_builder()
        .retry_config(RetryConfig::standard().with_initial_backoff(Duration::from_millis(10)))
        .build();
    Launcher::new(aws_sdk_ecs::Client::from_conf(config))
}

fn tag<'t>(task: &'t Task, key: &str) -> Option<&'t str> {
    task.tags()
        .iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

fn runner_environment(task: &Task) -> Vec<(String, String)> {
    let overrides = task.overrides().expect("the task keeps its overrides");
    let [runner] = overrides.container_overrides() else {
        panic!(
            "one container override, got {:?}",
            overrides.container_overrides().len()
        );
    };
    assert_eq!(runner.name(), Some(RUNNER_CONTAINER));
    runner
        .environment()
        .iter()
        .map(|kv| {
            (
                kv.name().unwrap_or_default().to_string(),
                kv.value().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn run_task_calls(proxy: &FaultyEcs) -> Vec<(Option<String>, bool)> {
    proxy
        .run_task_calls()
        .into_iter()
        .map(
            |Call {
                 capacity_provider,
                 injected,
                 ..
             }| (capacity_provider, injected),
        )
        .collect()
}

#[tokio::test]
async fn a_fargate_launch_creates_one_task_carrying_the_jit_config_tags_and_network() {
    let moto = MotoEcs::setup().await;
    let ecs = moto.launch_settings();
    let job = Job::new();

    let launched = launcher().await.run_task(&job.spec(&ecs)).await.unwrap();

    assert_eq!(moto.task_arns().await, [launched.arn.0.as_str()]);
    assert_eq!(launched.launch_type.as_deref(), Some("FARGATE"));
    assert_eq!(launched.capacity_provider, None);
    let task = moto.describe(&launched.arn.0).await;
    assert!(
        task.task_definition_arn()
            .unwrap()
            .ends_with(&format!(":task-definition/{}", moto.task_definition)),
        "{:?}",
        task.task_definition_arn()
    );
    assert_eq!(task.last_status(), Some("RUNNING"));
    assert_eq!(task.started_by(), Some(job.started_by.as_str()));
    assert_eq!(
        task.launch_type().map(|t| t.as_str()),
        Some(LaunchType::Fargate.as_str())
    );
    assert_eq!(
        runner_environment(&task),
        [
            ("RUNNER_LOG_LEVEL".to_string(), "debug".to_string()),
            (JIT_CONFIG_ENV.to_string(), job.jit()),
        ]
    );
    assert_eq!(tag(&task, TAG_JOB_ID), Some(job.id.to_string().as_str()));
    assert_eq!(tag(&task, TAG_POOL), Some(POOL));
    assert_eq!(tag(&task, TAG_RUNNER), Some(job.runner.as_str()));
    assert_eq!(tag(&task, "team"), Some("ci"));
    assert_eq!(task.tags().len(), 4);
    // The task's ENI sits in the pool's subnet with the pool's security group.
    let [eni] = task.attachments() else {
        panic!("one ENI attachment, got {:?}", task.attachments());
    };
    let detail = |name: &str| {
        eni.details()
            .iter()
            .find(|d| d.name() == Some(name))
            .and_then(|d| d.value())
            .map(str::to_string)
    };
    assert_eq!(detail("subnetId"), Some(moto.network.subnet.clone()));
    let eni_id = detail("networkInterfaceId").expect("an ENI id");
    assert_eq!(
        network_interface_groups(&eni_id).await,
        [moto.network.security_group.as_str()]
    );
}

#[tokio::test]
async fn the_first_capacity_provider_is_used_when_it_has_capacity() {
    let moto = MotoEcs::setup().await;
    let ecs = EcsLaunchSettings {
        launch_type: None,
        capacity_providers: vec!["FARGATE_SPOT".into(), "FARGATE".into()],
        ..moto.launch_settings()
    };
    let job = Job::new();

    let launched = launcher().await.run_task(&job.spec(&ecs)).await.unwrap();

    assert_eq!(launched.capacity_provider.as_deref(), Some("FARGATE_SPOT"));
    assert_eq!(moto.task_arns().await, [launched.arn.0.as_str()]);
    let task = moto.describe(&launched.arn.0).await;
    assert_eq!(task.capacity_provider_name(), Some("FARGATE_SPOT"));
}

#[tokio::test]
async fn a_capacity_failure_on_fargate_spot_launches_on_fargate() {
    let metrics = dockhand::metrics::install();
    let moto = MotoEcs::setup().await;
    let proxy = FaultyEcs::start().await;
    proxy.fail_run_task_on("FARGATE_SPOT", FARGATE_NO_CAPACITY);
    let ecs = EcsLaunchSettings {
        launch_type: None,
        capacity_providers: vec!["FARGATE_SPOT".into(), "FARGATE".into()],
        ..moto.launch_settings()
    };
    let job = Job::new();

    let launched = launcher_through(&proxy)
        .await
        .run_task(&job.spec(&ecs))
        .await
        .unwrap();

    assert_eq!(launched.capacity_provider.as_deref(), Some("FARGATE"));
    assert_eq!(
        run_task_calls(&proxy),
        [
            (Some("FARGATE_SPOT".to_string()), true),
            (Some("FARGATE".to_string()), false),
        ]
    );
    // One provider per RunTask, weight 1; the fallback sends its own client token (ECS
    // refuses a token reused for a different request).
    let requests: Vec<serde_json::Value> = proxy
        .run_task_calls()
        .into_iter()
        .map(|c| c.request)
        .collect();
    for (request, provider) in requests.iter().zip(["FARGATE_SPOT", "FARGATE"]) {
        assert_eq!(
            request["capacityProviderStrategy"],
            serde_json::json!([{ "capacityProvider": provider, "weight": 1, "base": 0 }])
        );
        assert_eq!(request["launchType"], serde_json::Value::Null);
        assert_eq!(request["enableECSManagedTags"], true);
        assert_eq!(request["propagateTags"], serde_json::Value::Null);
        assert_eq!(request["startedBy"], job.started_by.as_str());
        assert_eq!(request["count"], 1);
    }
    assert_eq!(requests[0]["clientToken"], job.token.as_str());
    let fallback_token = requests[1]["clientToken"].as_str().unwrap();
    assert_eq!(fallback_token.len(), 64);
    assert_ne!(fallback_token, job.token);
    // The task really exists in moto, on FARGATE, and it is the only one.
    assert_eq!(moto.task_arns().await, [launched.arn.0.as_str()]);
    let task = moto.describe(&launched.arn.0).await;
    assert_eq!(task.capacity_provider_name(), Some("FARGATE"));
    assert_eq!(task.started_by(), Some(job.started_by.as_str()));
    assert!(runner_environment(&task).contains(&(JIT_CONFIG_ENV.to_string(), job.jit())));
    // Other tests in this process (under `cargo test`) may count too.
    let rendered = metrics.render();
    for outcome in ["capacity", "ok"] {
        let series =
            format!("dockhand_ecs_requests_total{{operation=\"run_task\",outcome=\"{outcome}\"}}");
        assert!(
            sample(&rendered, &series).is_some_and(|n| n >= 1.0),
            "{series} in {rendered}"
        );
    }
}

#[tokio::test]
async fn no_capacity_on_any_provider_is_no_capacity_and_launches_nothing() {
    let moto = MotoEcs::setup().await;
    let proxy = FaultyEcs::start().await;
    proxy.fail_run_task_on("FARGATE_SPOT", FARGATE_NO_CAPACITY);
    proxy.fail_run_task_on("FARGATE", "RESOURCE:ENI");
    let ecs = EcsLaunchSettings {
        launch_type: None,
        capacity_providers: vec!["FARGATE_SPOT".into(), "FARGATE".into()],
        ..moto.launch_settings()
    };

    let err = launcher_through(&proxy)
        .await
        .run_task(&Job::new().spec(&ecs))
        .await
        .unwrap_err();

    let LaunchError::NoCapacity { tried } = &err else {
        panic!("expected NoCapacity, got {err:?}");
    };
    assert_eq!(tried, &["FARGATE_SPOT", "FARGATE"]);
    assert!(err.is_transient());
    assert_eq!(run_task_calls(&proxy).len(), 2);
    assert!(moto.task_arns().await.is_empty());
}

#[tokio::test]
async fn a_failure_that_is_not_about_capacity_is_rejected_without_trying_the_next_provider() {
    let moto = MotoEcs::setup().await;
    let proxy = FaultyEcs::start().await;
    proxy.fail_run_task_on("FARGATE_SPOT", "ATTRIBUTE");
    let ecs = EcsLaunchSettings {
        launch_type: None,
        capacity_providers: vec!["FARGATE_SPOT".into(), "FARGATE".into()],
        ..moto.launch_settings()
    };

    let err = launcher_through(&proxy)
        .await
        .run_task(&Job::new().spec(&ecs))
        .await
        .unwrap_err();

    let LaunchError::Rejected { reason } = &err else {
        panic!("expected Rejected, got {err:?}");
    };
    assert!(reason.starts_with("ATTRIBUTE ("), "{reason}");
    assert!(!err.is_transient());
    assert_eq!(
        run_task_calls(&proxy),
        [(Some("FARGATE_SPOT".to_string()), true)]
    );
    assert!(moto.task_arns().await.is_empty());
}

#[tokio::test]
async fn throttling_is_reported_once_the_sdks_retries_are_spent() {
    let moto = MotoEcs::setup().await;
    let proxy = FaultyEcs::start().await;
    proxy.throttle_run_task();

    let err = launcher_through(&proxy)
        .await
        .run_task(&Job::new().spec(&moto.launch_settings()))
        .await
        .unwrap_err();

    assert!(matches!(err, LaunchError::Throttled(_)), "{err:?}");
    assert!(err.is_transient());
    // The SDK's standard retry mode makes three attempts.
    assert_eq!(
        run_task_calls(&proxy),
        [(None, true), (None, true), (None, true)]
    );
    assert!(moto.task_arns().await.is_empty());
}

#[tokio::test]
async fn an_ec2_launch_runs_on_a_registered_container_instance() {
    let moto = MotoEcs::setup().await;
    let instance = register_container_instance(&moto.client, &moto.cluster).await;
    let ecs = EcsLaunchSettings {
        launch_type: Some(LaunchType::Ec2),
        ..moto.launch_settings()
    };
    let job = Job::new();

    let launched = launcher().await.run_task(&job.spec(&ecs)).await.unwrap();

    assert_eq!(launched.launch_type.as_deref(), Some("EC2"));
    assert_eq!(moto.task_arns().await, [launched.arn.0.as_str()]);
    let task = moto.describe(&launched.arn.0).await;
    assert_eq!(task.container_instance_arn(), Some(instance.as_str()));
    assert_eq!(task.launch_type().map(|t| t.as_str()), Some("EC2"));
    assert!(runner_environment(&task).contains(&(JIT_CONFIG_ENV.to_string(), job.jit())));
}

#[tokio::test]
async fn a_missing_cluster_is_rejected() {
    let moto = MotoEcs::setup().await;
    let ecs = EcsLaunchSettings {
        cluster: format!("missing-{}", uuid::Uuid::new_v4().simple()),
        ..moto.launch_settings()
    };

    let err = launcher()
        .await
        .run_task(&Job::new().spec(&ecs))
        .await
        .unwrap_err();

    let LaunchError::Rejected { reason } = &err else {
        panic!("expected Rejected, got {err:?}");
    };
    assert!(reason.starts_with("ClusterNotFoundException"), "{reason}");
    assert_eq!(err.kind(), "rejected");
}

#[tokio::test]
async fn an_unknown_task_definition_is_rejected_and_launches_nothing() {
    let moto = MotoEcs::setup().await;
    let ecs = EcsLaunchSettings {
        task_definition: format!("missing-{}:1", uuid::Uuid::new_v4().simple()),
        ..moto.launch_settings()
    };

    let err = launcher()
        .await
        .run_task(&Job::new().spec(&ecs))
        .await
        .unwrap_err();

    // moto answers ClientException "Unable to describe task definition."; ECS answers
    // ClientException or InvalidParameterException: all the request's fault.
    let LaunchError::Rejected { reason } = &err else {
        panic!("expected Rejected, got {err:?}");
    };
    assert!(reason.starts_with("ClientException"), "{reason}");
    assert!(moto.task_arns().await.is_empty());
}
