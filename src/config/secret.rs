//! Secrets in configuration: where each comes from, and how it stays out of logs and
//! out of `config check`'s output.

use std::path::PathBuf;

use anyhow::Context;
use secrecy::SecretString;
use serde::{Deserialize, Serialize, Serializer};
use tokio::sync::OnceCell;

use super::Problems;
use super::aws::AwsSettings;

/// Where one secret comes from: exactly one of an inline value, a file, an environment
/// variable (how ECS hands a task its Secrets Manager secrets), or the name of an SSM
/// parameter (read with decryption, so a SecureString works).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    #[serde(
        default,
        serialize_with = "redact",
        skip_serializing_if = "Option::is_none"
    )]
    pub value: Option<SecretString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssm: Option<String>,
}

/// Serializes a secret as a fixed marker, never its value.
pub fn redact<S: Serializer>(secret: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match secret {
        Some(_) => s.serialize_str("<redacted>"),
        None => s.serialize_none(),
    }
}

impl SecretSource {
    pub(super) fn check(&self, key: &str, problems: &mut Problems) {
        let set = [
            self.value.is_some(),
            self.file.is_some(),
            self.env.is_some(),
            self.ssm.is_some(),
        ]
        .into_iter()
        .filter(|set| *set)
        .count();
        if set != 1 {
            problems.add(
                key,
                "set exactly one of `value`, `file`, `env` (an environment variable's name) or \
                 `ssm` (the name of an SSM parameter)",
            );
        }
        if let Some(name) = &self.ssm
            && !name.starts_with('/')
            && name.contains('/')
        {
            problems.add(
                format!("{key}.ssm"),
                "a hierarchical SSM parameter name must start with `/`",
            );
        }
    }

    fn describe(&self) -> String {
        match (&self.file, &self.env, &self.ssm) {
            (Some(file), _, _) => format!("file {}", file.display()),
            (_, Some(name), _) => format!("environment variable {name}"),
            (_, _, Some(name)) => format!("SSM parameter {name}"),
            _ => "inline value".to_string(),
        }
    }
}

/// Reads secrets, creating the SSM client only if some secret lives in SSM.
pub struct SecretResolver<'a> {
    aws: &'a AwsSettings,
    ssm: OnceCell<aws_sdk_ssm::Client>,
}

impl<'a> SecretResolver<'a> {
    pub fn new(aws: &'a AwsSettings) -> Self {
        Self {
            aws,
            ssm: OnceCell::new(),
        }
    }

    pub async fn resolve(&self, source: &SecretSource) -> anyhow::Result<SecretString> {
        let read = async {
            if let Some(value) = &source.value {
                return Ok(value.clone());
            }
            if let Some(path) = &source.file {
                let text = tokio::fs::read_to_string(path).await?;
                return Ok(SecretString::from(text.trim_end_matches(['\r', '\n'])));
            }
            if let Some(name) = &source.env {
                let value = std::env::var(name).context("not set, or not UTF-8")?;
                return Ok(SecretString::from(value));
            }
            let Some(name) = &source.ssm else {
                anyhow::bail!("no source set");
            };
            let client = self
                .ssm
                .get_or_init(|| async { self.aws.ssm_client().await })
                .await;
            let out = client
                .get_parameter()
                .name(name)
                .with_decryption(true)
                .send()
                .await?;
            let value = out
                .parameter
                .and_then(|p| p.value)
                .context("the parameter has no value")?;
            Ok(SecretString::from(value))
        };
        let secret: SecretString = read
            .await
            .with_context(|| format!("reading secret from {}", source.describe()))?;
        if secrecy::ExposeSecret::expose_secret(&secret).is_empty() {
            anyhow::bail!("the secret from {} is empty", source.describe());
        }
        Ok(secret)
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[tokio::test]
    async fn a_secret_comes_from_an_environment_variable_and_a_missing_one_is_named() {
        let aws = AwsSettings::default();
        let resolver = SecretResolver::new(&aws);
        let from_env = SecretSource {
            env: Some("PATH".into()),
            ..SecretSource::default()
        };
        let mut p = Problems::default();
        from_env.check("github.private_key", &mut p);
        assert!(p.0.is_empty(), "{p}");
        let secret = resolver.resolve(&from_env).await.unwrap();
        assert_eq!(secret.expose_secret(), std::env::var("PATH").unwrap());

        let missing = SecretSource {
            env: Some("DOCKHAND_UNIT_NEVER_SET_SECRET".into()),
            ..SecretSource::default()
        };
        let err = format!("{:#}", resolver.resolve(&missing).await.unwrap_err());
        assert!(
            err.contains("environment variable DOCKHAND_UNIT_NEVER_SET_SECRET"),
            "{err}"
        );
    }
}
