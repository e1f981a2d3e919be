//! AWS settings and the clients built from them. Every client takes its endpoint from
//! here, so tests point the real SDK clients at moto by changing a field.

use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig, timeout::TimeoutConfig};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use super::{Problems, Secret};

/// `[aws]`: shared by every AWS client.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AwsSettings {
    /// Region; unset means the SDK's default chain (env, profile, task metadata).
    pub region: Option<String>,
    /// Endpoint for every AWS client unless the client's own section overrides it.
    pub endpoint_url: Option<String>,
    /// Static credentials, meant for moto or LocalStack. Unset means the SDK's default
    /// chain (in ECS, the task role).
    pub credentials: Option<StaticCredentials>,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Upper bound on one AWS call, retries included.
    #[serde(with = "humantime_serde")]
    pub operation_timeout: Duration,
    pub sqs: AwsClientSettings,
    pub ssm: AwsClientSettings,
    pub ecs: AwsClientSettings,
    pub run_task: RunTaskPacing,
}

/// `[aws.run_task]`: how fast this process calls ECS RunTask. ECS allows an account 20
/// RunTask calls a second (burst and sustained), and launches Fargate tasks from a bucket
/// of 100 that refills at 20 a second
/// (<https://docs.aws.amazon.com/AmazonECS/latest/APIReference/request-throttling.html>).
/// Pacing below that keeps a burst of jobs from turning into a storm of throttled retries.
/// Every process that launches shares the account's limit: with N workers, set
/// `per_second` to about 20 / N.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunTaskPacing {
    /// RunTask calls a second, sustained.
    pub per_second: f64,
    /// RunTask calls at once after a quiet spell.
    pub burst: u32,
}

impl Default for RunTaskPacing {
    fn default() -> Self {
        Self {
            per_second: 20.0,
            burst: 20,
        }
    }
}

impl Default for AwsSettings {
    fn default() -> Self {
        Self {
            region: None,
            endpoint_url: None,
            credentials: None,
            connect_timeout: Duration::from_secs(3),
            operation_timeout: Duration::from_secs(10),
            sqs: AwsClientSettings::default(),
            ssm: AwsClientSettings::default(),
            ecs: AwsClientSettings::default(),
            run_task: RunTaskPacing::default(),
        }
    }
}

/// A per-client override, e.g. `[aws.sqs]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AwsClientSettings {
    pub endpoint_url: Option<String>,
}

/// `[aws.credentials]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StaticCredentials {
    pub access_key_id: String,
    pub secret_access_key: Option<Secret>,
}

impl AwsSettings {
    pub(super) fn check(&self, problems: &mut Problems) {
        for (key, url) in [
            ("aws.endpoint_url", &self.endpoint_url),
            ("aws.sqs.endpoint_url", &self.sqs.endpoint_url),
            ("aws.ssm.endpoint_url", &self.ssm.endpoint_url),
            ("aws.ecs.endpoint_url", &self.ecs.endpoint_url),
        ] {
            if let Some(url) = url {
                super::check_http_url(key, url, problems);
            }
        }
        if let Some(creds) = &self.credentials
            && (creds.access_key_id.is_empty() || creds.secret_access_key.is_none())
        {
            problems.add(
                "aws.credentials",
                "set both `access_key_id` and `secret_access_key`, or neither",
            );
        }
        if !(self.run_task.per_second.is_finite() && self.run_task.per_second > 0.0) {
            problems.add("aws.run_task.per_second", "must be greater than zero");
        }
        if self.run_task.burst == 0 {
            problems.add("aws.run_task.burst", "must be at least 1");
        }
        if self.operation_timeout.is_zero() || self.connect_timeout.is_zero() {
            problems.add(
                "aws.operation_timeout",
                "timeouts must be greater than zero",
            );
        }
    }

    /// The shared SDK configuration. Loading it reads the default credential chain only
    /// when no static credentials are set.
    async fn sdk_config(&self) -> SdkConfig {
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(self.connect_timeout)
                .operation_timeout(self.operation_timeout)
                .build(),
        );
        if let Some(region) = &self.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(url) = &self.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some(StaticCredentials {
            access_key_id,
            secret_access_key: Some(secret),
        }) = &self.credentials
        {
            loader = loader.credentials_provider(aws_sdk_sqs::config::Credentials::new(
                access_key_id,
                secret.expose_secret(),
                None,
                None,
                "dockhand-config",
            ));
        }
        loader.load().await
    }

    /// An SQS client, at `aws.sqs.endpoint_url` when set.
    pub async fn sqs_client(&self) -> aws_sdk_sqs::Client {
        let mut config = aws_sdk_sqs::config::Builder::from(&self.sdk_config().await);
        if let Some(url) = &self.sqs.endpoint_url {
            config = config.endpoint_url(url);
        }
        aws_sdk_sqs::Client::from_conf(config.build())
    }

    /// An ECS client, at `aws.ecs.endpoint_url` when set.
    pub async fn ecs_client(&self) -> aws_sdk_ecs::Client {
        let mut config = aws_sdk_ecs::config::Builder::from(&self.sdk_config().await);
        if let Some(url) = &self.ecs.endpoint_url {
            config = config.endpoint_url(url);
        }
        aws_sdk_ecs::Client::from_conf(config.build())
    }

    /// An SSM client, at `aws.ssm.endpoint_url` when set.
    pub async fn ssm_client(&self) -> aws_sdk_ssm::Client {
        let mut config = aws_sdk_ssm::config::Builder::from(&self.sdk_config().await);
        if let Some(url) = &self.ssm.endpoint_url {
            config = config.endpoint_url(url);
        }
        aws_sdk_ssm::Client::from_conf(config.build())
    }
}
