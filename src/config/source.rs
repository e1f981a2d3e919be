//! Where the configuration comes from: a TOML file, or the TOML text of an SSM parameter
//! (`--config ssm:/dockhand/config`), which ECS tasks read with their task role.

use std::path::{Path, PathBuf};

use tokio::sync::OnceCell;

use super::{AwsSettings, ConfigError, DEFAULT_CONFIG_PATH, Settings};

/// The prefix that makes `--config` name an SSM parameter.
pub const SSM_PREFIX: &str = "ssm:";

/// The configuration's source, read again on every reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// `config/dockhand.toml` if it exists, else the defaults and the environment alone.
    Default,
    File(PathBuf),
    /// The name of an SSM parameter holding TOML (a SecureString works).
    Ssm(String),
}

impl ConfigSource {
    /// `--config`: `ssm:NAME` or a file path; none means [`ConfigSource::Default`].
    pub fn from_arg(arg: Option<&str>) -> Self {
        match arg {
            None => Self::Default,
            Some(arg) => match arg.strip_prefix(SSM_PREFIX) {
                Some(name) => Self::Ssm(name.to_string()),
                None => Self::File(PathBuf::from(arg)),
            },
        }
    }

    /// Reads and validates the settings (layered as [`Settings::load`] does).
    pub async fn load(&self) -> Result<Settings, ConfigError> {
        match self {
            Self::Default => Settings::load(None),
            Self::File(path) => Settings::load(Some(path)),
            Self::Ssm(name) => {
                let text = read_parameter(name).await.map_err(|error| match error {
                    ReadError::Settings(err) => err,
                    ReadError::Ssm(error) => ConfigError::Unreadable {
                        source_name: self.to_string(),
                        error,
                    },
                })?;
                Settings::load_str(&text)
            }
        }
    }

    /// Whether there is anything to read again: not when the defaults stand alone.
    pub fn can_reload(&self) -> bool {
        match self {
            Self::Default => Path::new(DEFAULT_CONFIG_PATH).is_file(),
            Self::File(_) | Self::Ssm(_) => true,
        }
    }
}

impl std::fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Default => write!(f, "{DEFAULT_CONFIG_PATH} (default)"),
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Ssm(name) => write!(f, "SSM parameter {name}"),
        }
    }
}

/// Reads the parameter with a client made once per process: its settings come from the
/// environment, which does not change, and a reload every few seconds should not set up
/// credentials afresh each time.
async fn read_parameter(name: &str) -> Result<String, ReadError> {
    static CLIENT: OnceCell<aws_sdk_ssm::Client> = OnceCell::const_new();
    let client = CLIENT
        .get_or_try_init(|| async {
            let aws: AwsSettings = Settings::aws_from_env()?;
            Ok::<_, ConfigError>(aws.ssm_client().await)
        })
        .await
        .map_err(ReadError::Settings)?;
    let out = client
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
        .map_err(|e| ReadError::Ssm(e.into()))?;
    out.parameter
        .and_then(|p| p.value)
        .ok_or_else(|| ReadError::Ssm("the parameter has no value".into()))
}

/// Why the parameter could not be read: `[aws]` from the environment is invalid, or SSM
/// did not give it.
enum ReadError {
    Settings(ConfigError),
    Ssm(Box<dyn std::error::Error + Send + Sync>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_argument_names_a_file_or_an_ssm_parameter() {
        assert_eq!(ConfigSource::from_arg(None), ConfigSource::Default);
        assert_eq!(
            ConfigSource::from_arg(Some("ssm:/dockhand/config")),
            ConfigSource::Ssm("/dockhand/config".into())
        );
        assert_eq!(
            ConfigSource::from_arg(Some("config/dockhand.toml")),
            ConfigSource::File("config/dockhand.toml".into())
        );
        assert_eq!(
            ConfigSource::Ssm("/x".into()).to_string(),
            "SSM parameter /x"
        );
    }
}
