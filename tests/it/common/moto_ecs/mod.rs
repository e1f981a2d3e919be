//! ECS on moto: a cluster, a runner task definition, a VPC to launch into and container
//! instances, each named uniquely so tests run in parallel against one moto_server.
//!
//! EC2 is set up with raw query-protocol requests (moto routes them to EC2 by the credential
//! scope in the Authorization header) rather than the large EC2 SDK crate.

pub mod faults;

use std::collections::BTreeMap;

use aws_sdk_ecs::types::{Compatibility, ContainerDefinition, NetworkMode, Task, TaskField};
use dockhand::config::{EcsLaunchSettings, LaunchType};

use super::{moto_aws, moto_url};

/// The container that receives the JIT config in the test task definition.
pub const RUNNER_CONTAINER: &str = "runner";

/// A VPC with one subnet and one security group in moto's EC2.
#[derive(Debug, Clone)]
pub struct Network {
    pub subnet: String,
    pub security_group: String,
}

/// A fresh cluster, task definition and network in moto, with moto's task lifecycle held
/// still so DescribeTasks answers a stable status.
#[derive(Debug, Clone)]
pub struct MotoEcs {
    /// A client talking to moto directly (not through any fault proxy).
    pub client: aws_sdk_ecs::Client,
    pub cluster: String,
    /// `family:revision`.
    pub task_definition: String,
    pub network: Network,
}

impl MotoEcs {
    pub async fn setup() -> Self {
        hold_task_status_still().await;
        let client = moto_aws().ecs_client().await;
        let cluster = create_cluster(&client).await;
        let task_definition = register_runner_task_definition(&client).await;
        let network = create_network().await;
        Self {
            client,
            cluster,
            task_definition,
            network,
        }
    }

    /// FARGATE launch settings for this cluster, task definition and network.
    pub fn launch_settings(&self) -> EcsLaunchSettings {
        launch_settings(&self.cluster, &self.task_definition, &self.network)
    }

    /// Every task in the cluster, whatever its status (moto's ListTasks without a
    /// desiredStatus lists them all).
    pub async fn task_arns(&self) -> Vec<String> {
        self.client
            .list_tasks()
            .cluster(&self.cluster)
            .send()
            .await
            .expect("ListTasks on moto")
            .task_arns
            .unwrap_or_default()
    }

    /// One task, tags included.
    pub async fn describe(&self, arn: &str) -> Task {
        let mut tasks = self
            .client
            .describe_tasks()
            .cluster(&self.cluster)
            .tasks(arn)
            .include(TaskField::Tags)
            .send()
            .await
            .expect("DescribeTasks on moto")
            .tasks
            .unwrap_or_default();
        assert_eq!(tasks.len(), 1, "DescribeTasks {arn}");
        tasks.remove(0)
    }
}

/// Launch settings a worker test can use as they are or adjust: FARGATE into `network`, the
/// `runner` container, one extra environment variable and one extra tag.
pub fn launch_settings(
    cluster: &str,
    task_definition: &str,
    network: &Network,
) -> EcsLaunchSettings {
    EcsLaunchSettings {
        cluster: cluster.to_string(),
        task_definition: task_definition.to_string(),
        container: RUNNER_CONTAINER.to_string(),
        launch_type: Some(LaunchType::Fargate),
        capacity_providers: Vec::new(),
        spot_capacity_providers: vec!["FARGATE_SPOT".into()],
        subnets: vec![network.subnet.clone()],
        security_groups: vec![network.security_group.clone()],
        assign_public_ip: false,
        platform_version: None,
        environment: BTreeMap::from([("RUNNER_LOG_LEVEL".to_string(), "debug".to_string())]),
        tags: BTreeMap::from([("team".to_string(), "ci".to_string())]),
    }
}

/// A uniquely named cluster with the Fargate capacity providers attached.
pub async fn create_cluster(client: &aws_sdk_ecs::Client) -> String {
    let name = format!("dockhand-{}", uuid::Uuid::new_v4().simple());
    client
        .create_cluster()
        .cluster_name(&name)
        .capacity_providers("FARGATE")
        .capacity_providers("FARGATE_SPOT")
        .send()
        .await
        .expect("creating the cluster in moto");
    name
}

/// A runner task definition usable on Fargate and EC2 (awsvpc). moto needs `memory` on
/// every container. Returns `family:revision`.
pub async fn register_runner_task_definition(client: &aws_sdk_ecs::Client) -> String {
    let family = format!("runner-{}", uuid::Uuid::new_v4().simple());
    let container = ContainerDefinition::builder()
        .name(RUNNER_CONTAINER)
        .image("ghcr.io/actions/actions-runner:latest")
        .memory(512)
        .cpu(256)
        .essential(true)
        .build();
    let out = client
        .register_task_definition()
        .family(&family)
        .network_mode(NetworkMode::Awsvpc)
        .requires_compatibilities(Compatibility::Fargate)
        .requires_compatibilities(Compatibility::Ec2)
        .cpu("256")
        .memory("512")
        .container_definitions(container)
        .send()
        .await
        .expect("registering the task definition in moto");
    let revision = out.task_definition.expect("a task definition").revision;
    format!("{family}:{revision}")
}

/// Sets moto's ECS task lifecycle to advance only after 1000 DescribeTasks, so a task stays
/// RUNNING for the test. The setting is global to the moto server and tests run in parallel,
/// so every test sets the same value and none resets it.
pub async fn hold_task_status_still() {
    let body =
        r#"{"model_name": "ecs::task", "transition": {"progression": "manual", "times": 1000}}"#;
    let response = reqwest::Client::new()
        .post(format!(
            "{}/moto-api/state-manager/set-transition",
            moto_url()
        ))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("moto's state manager answers");
    assert!(
        response.status().is_success(),
        "set-transition: {}",
        response.status()
    );
}

/// A VPC (with DNS hostnames, which moto's Fargate ENIs need), a subnet and a security group.
pub async fn create_network() -> Network {
    let vpc = ec2("CreateVpc", &[("CidrBlock", "10.0.0.0/16")]).await;
    let vpc = first_value(&vpc, "vpcId");
    ec2(
        "ModifyVpcAttribute",
        &[("VpcId", &vpc), ("EnableDnsHostnames.Value", "true")],
    )
    .await;
    let subnet = ec2(
        "CreateSubnet",
        &[("VpcId", &vpc), ("CidrBlock", "10.0.1.0/24")],
    )
    .await;
    let group_name = format!("dockhand-{}", uuid::Uuid::new_v4().simple());
    let group = ec2(
        "CreateSecurityGroup",
        &[
            ("VpcId", &vpc),
            ("GroupName", &group_name),
            ("GroupDescription", "dockhand test runners"),
        ],
    )
    .await;
    Network {
        subnet: first_value(&subnet, "subnetId"),
        security_group: first_value(&group, "groupId"),
    }
}

/// Starts an EC2 instance in moto and registers it with the cluster. Returns the container
/// instance's ARN.
pub async fn register_container_instance(client: &aws_sdk_ecs::Client, cluster: &str) -> String {
    let run = ec2(
        "RunInstances",
        &[
            // An Amazon Linux AMI from moto's built-in list.
            ("ImageId", "ami-760aaa0f"),
            ("InstanceType", "t3.large"),
            ("MinCount", "1"),
            ("MaxCount", "1"),
        ],
    )
    .await;
    let instance = first_value(&run, "instanceId");
    let document = serde_json::json!({ "instanceId": instance }).to_string();
    client
        .register_container_instance()
        .cluster(cluster)
        .instance_identity_document(document)
        .send()
        .await
        .expect("registering the container instance in moto")
        .container_instance
        .and_then(|c| c.container_instance_arn)
        .expect("a container instance ARN")
}

/// The security groups of a network interface, from moto's EC2.
pub async fn network_interface_groups(eni: &str) -> Vec<String> {
    let xml = ec2(
        "DescribeNetworkInterfaces",
        &[("NetworkInterfaceId.1", eni)],
    )
    .await;
    all_values(&xml, "groupId")
}

/// One EC2 query-protocol request to moto; returns the XML answer.
pub async fn ec2(action: &str, params: &[(&str, &str)]) -> String {
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("Action", action)
        .append_pair("Version", "2016-11-15")
        .extend_pairs(params)
        .finish();
    let response = reqwest::Client::new()
        .post(format!("{}/", moto_url()))
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/ec2/aws4_request, \
             SignedHeaders=host, Signature=0",
        )
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("EC2 {action} on moto: {e}"));
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "EC2 {action}: {status}: {text}");
    text
}

fn all_values(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut values = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let end = after
            .find(&close)
            .unwrap_or_else(|| panic!("<{tag}> is not closed in {xml}"));
        values.push(after[..end].to_string());
        rest = &after[end..];
    }
    values
}

fn first_value(xml: &str, tag: &str) -> String {
    all_values(xml, tag)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no <{tag}> in {xml}"))
}
