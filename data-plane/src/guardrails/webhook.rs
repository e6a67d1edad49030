//! External guardrail: `POST {guardrail, direction, text, texts}` as JSON to
//! a tenant-configured URL with a timeout; the answer is a verdict
//! `{"action": "allow" | "block" | "rewrite", "text"?, "texts"?}`. When the
//! check cannot answer (timeout, connection error, non-2xx, bad verdict) the
//! guardrail's explicit fail mode decides: open lets the call through,
//! closed refuses it.

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use tollgate_core::guardrail::FailMode;

#[derive(Debug, Clone)]
pub struct WebhookSpec {
    pub url: String,
    pub timeout: Duration,
    pub fail: FailMode,
}

/// What the webhook decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookVerdict {
    Allow,
    Block,
    /// Replacement texts, one per text sent (or one for a single text).
    Rewrite(Vec<String>),
    /// No usable answer; the category says why (`webhook_timeout`,
    /// `webhook_error`).
    Failed(&'static str),
}

#[derive(Deserialize)]
struct VerdictJson {
    action: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    texts: Option<Vec<String>>,
}

/// Asks the webhook about `texts`.
pub async fn ask(
    client: &reqwest::Client,
    spec: &WebhookSpec,
    guardrail: &str,
    direction: &str,
    texts: &[&str],
) -> WebhookVerdict {
    let body = json!({
        "guardrail": guardrail,
        "direction": direction,
        "text": texts.join("\n"),
        "texts": texts,
    });
    let call = async {
        let resp = client
            .post(&spec.url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|_| "webhook_error")?;
        if !resp.status().is_success() {
            return Err("webhook_error");
        }
        let bytes = resp.bytes().await.map_err(|_| "webhook_error")?;
        serde_json::from_slice::<VerdictJson>(&bytes).map_err(|_| "webhook_error")
    };
    let verdict = match tokio::time::timeout(spec.timeout, call).await {
        Err(_) => return WebhookVerdict::Failed("webhook_timeout"),
        Ok(Err(why)) => return WebhookVerdict::Failed(why),
        Ok(Ok(v)) => v,
    };
    match verdict.action.as_str() {
        "allow" => WebhookVerdict::Allow,
        "block" => WebhookVerdict::Block,
        "rewrite" => match (verdict.texts, verdict.text) {
            (Some(t), _) if t.len() == texts.len() => WebhookVerdict::Rewrite(t),
            (None, Some(t)) if texts.len() <= 1 => WebhookVerdict::Rewrite(vec![t]),
            _ => WebhookVerdict::Failed("webhook_error"),
        },
        _ => WebhookVerdict::Failed("webhook_error"),
    }
}
