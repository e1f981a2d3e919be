//! SSM Parameter Store: one `GetParameter` (with decryption, so a SecureString works) for
//! both a secret's `{ ssm = NAME }` and the configuration's `--config ssm:NAME`.

use std::sync::{Mutex, MutexGuard, PoisonError};

use aws_sdk_ssm::config::http::HttpResponse;
use aws_sdk_ssm::error::SdkError;
use aws_sdk_ssm::operation::get_parameter::GetParameterError;

use super::AwsSettings;

/// The SSM clients made so far, one per distinct `[aws]`. A reload every few seconds, and
/// every secret read at start-up, use the client (and its credentials) already set up.
static CLIENTS: Mutex<Vec<(AwsSettings, aws_sdk_ssm::Client)>> = Mutex::new(Vec::new());

/// Why a parameter could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ParameterError {
    #[error(transparent)]
    Request(Box<SdkError<GetParameterError, HttpResponse>>),
    #[error("the parameter has no value")]
    NoValue,
}

/// The decrypted value of the parameter `name`, read with the client for `aws`.
pub(crate) async fn get_parameter(aws: &AwsSettings, name: &str) -> Result<String, ParameterError> {
    let out = client(aws)
        .await
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
        .map_err(|err| ParameterError::Request(Box::new(err)))?;
    out.parameter
        .and_then(|p| p.value)
        .ok_or(ParameterError::NoValue)
}

/// The client for `aws`, made on first use.
async fn client(aws: &AwsSettings) -> aws_sdk_ssm::Client {
    let cached = find(&lock(), aws);
    if let Some(client) = cached {
        return client;
    }
    // Made outside the lock: making it may load credentials. Two callers racing here both
    // make one, and the first stored is kept.
    let made = aws.ssm_client().await;
    let mut clients = lock();
    if let Some(client) = find(&clients, aws) {
        return client;
    }
    clients.push((aws.clone(), made.clone()));
    made
}

fn lock() -> MutexGuard<'static, Vec<(AwsSettings, aws_sdk_ssm::Client)>> {
    CLIENTS.lock().unwrap_or_else(PoisonError::into_inner)
}

fn find(
    clients: &[(AwsSettings, aws_sdk_ssm::Client)],
    aws: &AwsSettings,
) -> Option<aws_sdk_ssm::Client> {
    clients
        .iter()
        .find(|(settings, _)| settings == aws)
        .map(|(_, client)| client.clone())
}
