//! One RunTask per launch option, in order, until one has capacity.

use std::borrow::Cow;
use std::collections::BTreeMap;

use aws_sdk_ecs::Client;
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, CapacityProviderStrategyItem, ContainerOverride,
    KeyValuePair, NetworkConfiguration, Tag, TaskOverride,
};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

use super::error::{FailureVerdict, judge_failures};
use super::{
    LaunchError, LaunchSpec, LaunchedTask, Operation, Outcome, Placement, TAG_JOB_ID, TAG_POOL,
    TAG_RUNNER, TaskArn, failed, record,
};
use crate::config::pool::JIT_CONFIG_ENV;
use crate::config::{EcsLaunchSettings, LaunchType};
use crate::pacing::Pacer;

/// One way to place the task: a single RunTask.
#[derive(Debug, Clone, Copy)]
enum LaunchOption<'a> {
    CapacityProvider(&'a str),
    LaunchType(LaunchType),
    /// Neither set (validation forbids it, but ECS allows it): the cluster's default
    /// capacity provider strategy.
    ClusterDefault,
}

impl LaunchOption<'_> {
    fn name(&self) -> &str {
        match self {
            Self::CapacityProvider(name) => name,
            Self::LaunchType(launch_type) => launch_type.as_str(),
            Self::ClusterDefault => "the cluster's default strategy",
        }
    }
}

fn launch_options<'a>(ecs: &'a EcsLaunchSettings, placement: &Placement) -> Vec<LaunchOption<'a>> {
    if !ecs.capacity_providers.is_empty() {
        let mut providers: Vec<&str> = ecs.capacity_providers.iter().map(String::as_str).collect();
        if let Some(after) = &placement.after
            && let Some(at) = providers.iter().position(|p| p == after)
            && at + 1 < providers.len()
        {
            providers.drain(..=at);
        }
        if placement.on_demand {
            let on_demand: Vec<&str> = providers
                .iter()
                .copied()
                .filter(|p| !ecs.is_spot(p))
                .collect();
            if !on_demand.is_empty() {
                providers = on_demand;
            }
        }
        providers
            .into_iter()
            .map(LaunchOption::CapacityProvider)
            .collect()
    } else if let Some(launch_type) = ecs.launch_type {
        vec![LaunchOption::LaunchType(launch_type)]
    } else {
        vec![LaunchOption::ClusterDefault]
    }
}

/// The client token for the `index`th option: ECS answers a token reused for a different
/// request with ConflictException, and a fallback provider makes a different request.
fn client_token<'a>(token: &'a str, index: usize, option: &LaunchOption<'_>) -> Cow<'a, str> {
    if index == 0 {
        Cow::Borrowed(token)
    } else {
        let digest = Sha256::digest(format!("{token}\n{}", option.name()));
        Cow::Owned(hex::encode(digest))
    }
}

pub(super) async fn run_task(
    client: &Client,
    pacer: &Pacer,
    spec: &LaunchSpec<'_>,
) -> Result<LaunchedTask, LaunchError> {
    let ecs = spec.ecs;
    let overrides = overrides(spec);
    let tags = tags(spec);
    let network = network_configuration(ecs);
    let mut tried = Vec::new();
    for (index, option) in launch_options(ecs, spec.placement).iter().enumerate() {
        let mut request = client
            .run_task()
            .cluster(&ecs.cluster)
            .task_definition(&ecs.task_definition)
            .count(1)
            .started_by(spec.started_by)
            .client_token(client_token(spec.client_token, index, option))
            .enable_ecs_managed_tags(true)
            .set_tags(Some(tags.clone()))
            .overrides(overrides.clone())
            .set_network_configuration(network.clone())
            .set_platform_version(ecs.platform_version.clone());
        request = match option {
            LaunchOption::CapacityProvider(provider) => request.capacity_provider_strategy(
                CapacityProviderStrategyItem::builder()
                    .capacity_provider(*provider)
                    .weight(1)
                    .build()
                    .expect("the capacity provider is set"),
            ),
            LaunchOption::LaunchType(launch_type) => {
                request.launch_type(launch_type.as_str().into())
            }
            LaunchOption::ClusterDefault => request,
        };
        pacer.ready().await;
        let out = request
            .send()
            .await
            .map_err(|e| failed(Operation::RunTask, e))?;
        // Never print `out`: its task echoes the overrides, JIT config included.
        if let Some(task) = out.tasks.unwrap_or_default().into_iter().next() {
            record(Operation::RunTask, Outcome::Ok);
            let Some(arn) = task.task_arn else {
                return Err(LaunchError::Unavailable(
                    "RunTask answered a task without an ARN".into(),
                ));
            };
            let capacity_provider = task.capacity_provider_name.or(match option {
                LaunchOption::CapacityProvider(provider) => Some(provider.to_string()),
                _ => None,
            });
            tracing::info!(
                pool = spec.pool,
                job.id = ?spec.job_id,
                runner = spec.runner_name,
                ecs.task = %arn,
                ecs.launched_on = option.name(),
                "launched the runner task"
            );
            return Ok(LaunchedTask {
                arn: TaskArn(arn),
                capacity_provider,
                launch_type: task.launch_type.map(|t| t.as_str().to_string()),
            });
        }
        match judge_failures(out.failures.as_deref().unwrap_or_default()) {
            FailureVerdict::Capacity(failures) => {
                record(Operation::RunTask, Outcome::Capacity);
                tracing::info!(
                    pool = spec.pool,
                    job.id = ?spec.job_id,
                    ecs.option = option.name(),
                    ecs.failures = ?failures,
                    "no capacity on this launch option"
                );
                tried.push(option.name().to_string());
            }
            FailureVerdict::Rejected(reason) => {
                record(Operation::RunTask, Outcome::Rejected);
                return Err(LaunchError::Rejected { reason });
            }
            FailureVerdict::Empty => {
                record(Operation::RunTask, Outcome::Unavailable);
                return Err(LaunchError::Unavailable(
                    "RunTask answered neither a task nor a failure".into(),
                ));
            }
        }
    }
    Err(LaunchError::NoCapacity { tried })
}

/// The runner container's environment: the pool's, then the JIT config.
fn overrides(spec: &LaunchSpec<'_>) -> TaskOverride {
    let environment = spec
        .ecs
        .environment
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .chain([(JIT_CONFIG_ENV, spec.jit_config.expose_secret())])
        .map(|(name, value)| KeyValuePair::builder().name(name).value(value).build())
        .collect();
    TaskOverride::builder()
        .container_overrides(
            ContainerOverride::builder()
                .name(&spec.ecs.container)
                .set_environment(Some(environment))
                .build(),
        )
        .build()
}

/// The pool's tags, then dockhand's own (which win on a clash).
fn tags(spec: &LaunchSpec<'_>) -> Vec<Tag> {
    let mut tags: BTreeMap<&str, Cow<'_, str>> = spec
        .ecs
        .tags
        .iter()
        .map(|(k, v)| (k.as_str(), Cow::Borrowed(v.as_str())))
        .collect();
    if let Some(job) = spec.job_id {
        tags.insert(TAG_JOB_ID, Cow::Owned(job.to_string()));
    }
    tags.insert(TAG_POOL, Cow::Borrowed(spec.pool));
    tags.insert(TAG_RUNNER, Cow::Borrowed(spec.runner_name));
    tags.into_iter()
        .map(|(key, value)| Tag::builder().key(key).value(value).build())
        .collect()
}

/// awsvpc networking, when the pool names subnets.
fn network_configuration(ecs: &EcsLaunchSettings) -> Option<NetworkConfiguration> {
    if ecs.subnets.is_empty() {
        return None;
    }
    let assign_public_ip = if ecs.assign_public_ip {
        AssignPublicIp::Enabled
    } else {
        AssignPublicIp::Disabled
    };
    let awsvpc = AwsVpcConfiguration::builder()
        .set_subnets(Some(ecs.subnets.clone()))
        .set_security_groups((!ecs.security_groups.is_empty()).then(|| ecs.security_groups.clone()))
        .assign_public_ip(assign_public_ip)
        .build()
        .expect("subnets are set");
    Some(
        NetworkConfiguration::builder()
            .awsvpc_configuration(awsvpc)
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(toml: &str) -> EcsLaunchSettings {
        toml::from_str(toml).unwrap()
    }

    #[test]
    fn capacity_providers_are_tried_in_order_else_the_launch_type() {
        let ecs = settings(
            r#"
            cluster = "c"
            task_definition = "t"
            capacity_providers = ["FARGATE_SPOT", "FARGATE"]
            "#,
        );
        let options = launch_options(&ecs, &Placement::default());
        let names: Vec<&str> = options.iter().map(|o| o.name()).collect();
        assert_eq!(names, ["FARGATE_SPOT", "FARGATE"]);
        let ecs = settings(
            r#"
            cluster = "c"
            task_definition = "t"
            launch_type = "EC2"
            "#,
        );
        let options = launch_options(&ecs, &Placement::default());
        let names: Vec<&str> = options.iter().map(|o| o.name()).collect();
        assert_eq!(names, ["EC2"]);
    }

    #[test]
    fn an_interruption_moves_the_launch_past_its_provider_and_a_rerun_to_on_demand() {
        let ecs = settings(
            r#"
            cluster = "c"
            task_definition = "t"
            capacity_providers = ["FARGATE_SPOT", "ec2-spot", "FARGATE"]
            spot_capacity_providers = ["FARGATE_SPOT", "ec2-spot"]
            "#,
        );
        let names = |placement: Placement| -> Vec<String> {
            launch_options(&ecs, &placement)
                .iter()
                .map(|o| o.name().to_string())
                .collect()
        };
        let after = |p: &str| Placement {
            after: Some(p.into()),
            on_demand: false,
        };
        assert_eq!(names(after("FARGATE_SPOT")), ["ec2-spot", "FARGATE"]);
        assert_eq!(names(after("ec2-spot")), ["FARGATE"]);
        // The last one (or one the pool no longer has): every provider, in order.
        assert_eq!(
            names(after("FARGATE")),
            ["FARGATE_SPOT", "ec2-spot", "FARGATE"]
        );
        assert_eq!(
            names(after("gone")),
            ["FARGATE_SPOT", "ec2-spot", "FARGATE"]
        );
        let on_demand = Placement {
            after: None,
            on_demand: true,
        };
        assert_eq!(names(on_demand), ["FARGATE"]);
        // A pool of Spot capacity only launches there all the same.
        let spot_only = settings(
            r#"
            cluster = "c"
            task_definition = "t"
            capacity_providers = ["FARGATE_SPOT"]
            "#,
        );
        let options = launch_options(
            &spot_only,
            &Placement {
                after: Some("FARGATE_SPOT".into()),
                on_demand: true,
            },
        );
        assert_eq!(options.len(), 1);
        assert_eq!(options[0].name(), "FARGATE_SPOT");
    }

    #[test]
    fn the_first_option_keeps_the_token_and_later_ones_derive_their_own() {
        let spot = LaunchOption::CapacityProvider("FARGATE_SPOT");
        let fargate = LaunchOption::CapacityProvider("FARGATE");
        assert_eq!(client_token("job-7", 0, &spot), "job-7");
        let derived = client_token("job-7", 1, &fargate);
        assert_eq!(derived.len(), 64);
        assert_eq!(derived, client_token("job-7", 1, &fargate));
        assert_ne!(derived, client_token("job-8", 1, &fargate));
        assert_ne!(derived, client_token("job-7", 1, &spot));
    }
}
