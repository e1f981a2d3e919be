//! The scale-out soak's queues on moto: a main queue whose redrive policy names a
//! dead-letter queue, created through SQS's JSON protocol.

use anyhow::Context;
use serde_json::{Value, json};

async fn call(
    http: &reqwest::Client,
    moto: &str,
    action: &str,
    body: Value,
) -> anyhow::Result<Value> {
    let response = http
        .post(moto)
        .header("x-amz-target", format!("AmazonSQS.{action}"))
        .header("content-type", "application/x-amz-json-1.0")
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=simkey/20260101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=0",
        )
        .body(body.to_string())
        .send()
        .await
        .with_context(|| format!("SQS {action} on moto at {moto}"))?;
    let status = response.status();
    let text = response.text().await?;
    anyhow::ensure!(
        status.is_success(),
        "SQS {action} on moto: {status}: {text}"
    );
    Ok(serde_json::from_str(&text)?)
}

/// Creates `{name}` and `{name}-dlq`; returns their URLs.
pub async fn create_queues(moto: &str, name: &str) -> anyhow::Result<(String, String)> {
    let http = reqwest::Client::builder().no_proxy().build()?;
    let url = |v: &Value| {
        v.get("QueueUrl")
            .and_then(Value::as_str)
            .map(str::to_string)
            .context("CreateQueue answered no QueueUrl")
    };
    let dlq = url(&call(
        &http,
        moto,
        "CreateQueue",
        json!({"QueueName": format!("{name}-dlq")}),
    )
    .await?)?;
    let attributes = call(
        &http,
        moto,
        "GetQueueAttributes",
        json!({"QueueUrl": dlq, "AttributeNames": ["QueueArn"]}),
    )
    .await?;
    let arn = attributes
        .pointer("/Attributes/QueueArn")
        .and_then(Value::as_str)
        .context("no QueueArn")?;
    let redrive = json!({"deadLetterTargetArn": arn, "maxReceiveCount": "20"}).to_string();
    let main = url(&call(
        &http,
        moto,
        "CreateQueue",
        json!({"QueueName": name, "Attributes": {"RedrivePolicy": redrive}}),
    )
    .await?)?;
    Ok((main, dlq))
}
