//! Secrets in configuration: the [`Secret`] that holds one, where each comes from, and how
//! it stays out of logs and out of `config check`'s output.

use std::fmt;
use std::path::PathBuf;

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};

use super::Problems;
use super::aws::AwsSettings;
use super::ssm;

/// A secret held in settings. Its `Debug` and `Serialize` both print `<redacted>`, so no
/// settings struct can leak one through a log line or `config check`, whatever its derives.
///
/// Two secrets are equal when their values are: that is how a reload tells a changed
/// secret. The comparison is not constant-time; it is for telling settings apart, never
/// for checking a secret someone presented.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(SecretString);

/// What a [`Secret`] prints as, in `Debug` and in serialized settings.
const REDACTED: &str = "<redacted>";

impl ExposeSecret<str> for Secret {
    fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(SecretString::from(value))
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(SecretString::from(value))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.expose_secret() == other.expose_secret()
    }
}

impl Eq for Secret {}

/// Where one secret comes from: exactly one of an inline value, a file, an environment
/// variable (how ECS hands a task its Secrets Manager secrets), or the name of an SSM
/// parameter (read with decryption, so a SecureString works).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssm: Option<String>,
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

/// Reads secrets; SSM is reached (and its client made) only if some secret lives there.
pub struct SecretResolver<'a> {
    aws: &'a AwsSettings,
}

impl<'a> SecretResolver<'a> {
    /// A resolver that reaches SSM with the clients `aws` describes.
    pub fn new(aws: &'a AwsSettings) -> Self {
        Self { aws }
    }

    /// The secret's value, from wherever `source` says; an empty one is an error.
    pub async fn resolve(&self, source: &SecretSource) -> anyhow::Result<SecretString> {
        let read = async {
            if let Some(value) = &source.value {
                return Ok(value.0.clone());
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
            Ok(SecretString::from(
                ssm::get_parameter(self.aws, name).await?,
            ))
        };
        let secret: SecretString = read
            .await
            .with_context(|| format!("reading secret from {}", source.describe()))?;
        if secret.expose_secret().is_empty() {
            anyhow::bail!("the secret from {} is empty", source.describe());
        }
        Ok(secret)
    }
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn a_secret_prints_redacted_and_compares_by_value() {
        let secret = Secret::from("hunter2");
        assert_eq!(format!("{secret:?}"), REDACTED);
        assert_eq!(serde_json::to_value(&secret).unwrap(), REDACTED);
        let source = SecretSource {
            value: Some(secret.clone()),
            ..SecretSource::default()
        };
        assert!(!format!("{source:?}").contains("hunter2"));
        assert_eq!(secret, Secret::from("hunter2".to_string()));
        assert_ne!(secret, Secret::from("hunter3"));
    }
}
