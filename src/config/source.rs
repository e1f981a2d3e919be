//! Where the configuration comes from: a TOML file, or the TOML text of an SSM parameter
//! (`--config ssm:/dockhand/config`), which ECS tasks read with their task role.

use std::path::{Path, PathBuf};

use super::{ConfigError, DEFAULT_CONFIG_PATH, Settings, ssm};

/// The prefix that makes `--config` name an SSM parameter.
const SSM_PREFIX: &str = "ssm:";

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
                // `[aws]` from the environment alone: the rest is in the parameter.
                let aws = Settings::aws_from_env()?;
                let text = ssm::get_parameter(&aws, name).await.map_err(|error| {
                    ConfigError::Unreadable {
                        source_name: self.to_string(),
                        error: Box::new(error),
                    }
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
