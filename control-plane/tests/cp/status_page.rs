//! The public status page: a scripted mix of upstream successes and
//! failures reported as usage → exact figures on `/status.json`; incidents
//! posted by an operator; no tenant or provider name on the public page;
//! Prometheus counters of usage ingestion.

use serde_json::Value;
use tollgate_proto::admin::v1 as admin;
use tollgate_proto::admin::v1::status_service_client::StatusServiceClient;
use tollgate_proto::sync::v1 as pb;

use crate::harness::{Bearer, Cp};

fn attempt(provider: &str, status: u32, latency_ms: i64, code: &str) -> pb::UpstreamAttempt {
    pb::UpstreamAttempt {
        provider_id: provider.into(),
        upstream_model: String::new(),
        status_code: status,
        latency_ms,
        error_code: code.into(),
    }
}

/// A call of `tenant` served (or last tried) by `provider` for
/// `upstream_model`, with its attempts.
fn call(
    id: usize,
    tenant: &str,
    provider: &str,
    upstream_model: &str,
    started: i64,
    ttft_ms: i64,
    mut attempts: Vec<pb::UpstreamAttempt>,
) -> pb::UsageRecord {
    for a in &mut attempts {
        a.upstream_model = upstream_model.into();
    }
    let last = attempts.last().map_or(200, |a| a.status_code);
    pb::UsageRecord {
        id: format!("ur_status_{id}"),
        request_id: format!("req_{id}"),
        tenant_id: tenant.into(),
        key_id: "ck_1".into(),
        model: "public-model".into(),
        provider_id: provider.into(),
        upstream_model: upstream_model.into(),
        started_at_ms: started,
        latency_ms: 100,
        status_code: if last == 0 { 504 } else { last },
        stream: ttft_ms >= 0,
        ttft_ms: (ttft_ms >= 0).then_some(ttft_ms),
        attempts,
        ..Default::default()
    }
}

async fn get(url: &str) -> (u16, String, String) {
    let r = reqwest::get(url).await.unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ct, r.text().await.unwrap())
}

#[tokio::test]
async fn status_json_shows_exact_figures_of_a_scripted_mix() {
    let cp = Cp::start().await;
    let url = cp.running().url.clone();
    let mut a = cp.admin().await;
    let acme = a.tenant("acme").await;
    let beta = a.tenant("beta").await;
    let openai = a
        .provider("acme", "acme-secret-provider", "sk-acme-000000000000")
        .await;
    let claude = a
        .providers
        .add_provider(admin::AddProviderRequest {
            tenant: "beta".into(),
            name: "beta-claude".into(),
            kind: "anthropic".into(),
            api_key: "sk-ant-0000000000000".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();

    let now = tollgate_core::time::now_ms();
    let recent = now - 60_000;
    let earlier = now - 3 * 3_600_000;
    let (o, c) = (openai.id.as_str(), claude.id.as_str());
    let mut records = Vec::new();
    let mut n = 0;
    let mut add = |tenant: &str, p: &str, m: &str, at: i64, ttft: i64, att| {
        n += 1;
        records.push(call(n, tenant, p, m, at, ttft, att));
    };
    // Last hour, openai / gpt-x: 7 fast successes (2 streamed, first token
    // after 40 ms), one slow success, a 503, a timeout then a success, a
    // 400 from the provider, and a caller who left (not counted).
    for i in 0..7 {
        let ttft = if i < 2 { 40 } else { -1 };
        add(
            &acme.id,
            o,
            "gpt-x",
            recent,
            ttft,
            vec![attempt(o, 200, 20, "")],
        );
    }
    add(
        &acme.id,
        o,
        "gpt-x",
        recent,
        -1,
        vec![attempt(o, 200, 300, "")],
    );
    add(
        &acme.id,
        o,
        "gpt-x",
        recent,
        -1,
        vec![attempt(o, 503, 10, "upstream_status")],
    );
    add(
        &acme.id,
        o,
        "gpt-x",
        recent,
        -1,
        vec![
            attempt(o, 0, 5000, "upstream_timeout"),
            attempt(o, 200, 80, ""),
        ],
    );
    add(
        &acme.id,
        o,
        "gpt-x",
        recent,
        -1,
        vec![attempt(o, 400, 15, "upstream_status")],
    );
    add(
        &acme.id,
        o,
        "gpt-x",
        recent,
        -1,
        vec![attempt(o, 0, 50, "client_disconnected")],
    );
    // Three hours ago (day window only): two 500s.
    for _ in 0..2 {
        add(
            &acme.id,
            o,
            "gpt-x",
            earlier,
            -1,
            vec![attempt(o, 500, 30, "upstream_status")],
        );
    }
    // Another tenant, another provider kind: one success.
    add(
        &beta.id,
        c,
        "claude-x",
        recent,
        700,
        vec![attempt(c, 200, 30, "")],
    );
    let total = records.len();

    let mut sync = cp.sync().await;
    let batch = pb::UsageBatch {
        node_id: "dp-1".into(),
        records,
    };
    sync.report_usage(batch.clone()).await.unwrap();
    // Re-delivered: counted once.
    let again = sync.report_usage(batch).await.unwrap().into_inner();
    assert_eq!(again.duplicates as usize, total);

    let mut status = StatusServiceClient::with_interceptor(
        cp.channel().await,
        Bearer::new(&cp.running().admin_token),
    );
    let inc = status
        .create_incident(admin::CreateIncidentRequest {
            title: "Elevated <errors> on gpt-x".into(),
            message: "Investigating 5xx from the provider.".into(),
            impact: "major".into(),
            components: vec!["openai".into(), "gpt-x".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(inc.state, "investigating");
    let updated = status
        .update_incident(admin::UpdateIncidentRequest {
            id: inc.id.clone(),
            state: "monitoring".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (updated.state.as_str(), updated.impact.as_str()),
        ("monitoring", "major")
    );
    let bad = status
        .update_incident(admin::UpdateIncidentRequest {
            id: inc.id.clone(),
            state: "fixed-ish".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);

    let (code, ct, body) = get(&format!("{url}/status.json")).await;
    assert_eq!(code, 200);
    assert!(ct.starts_with("application/json"), "{ct}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let model = |kind: &str, m: &str| -> Value {
        v["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["provider"] == kind && c["model"] == m)
            .cloned()
            .unwrap_or_else(|| panic!("no {kind}/{m} in {v}"))
    };
    let gpt = model("openai", "gpt-x");
    let hour = &gpt["hour"];
    assert_eq!(hour["attempts"], 12);
    assert_eq!(hour["failures"], 2);
    assert_eq!(hour["errors"], 3);
    assert_eq!(hour["availability"].as_f64().unwrap(), 10.0 / 12.0);
    assert_eq!(hour["error_rate"].as_f64().unwrap(), 3.0 / 12.0);
    // 9 successes: 7 × 20 ms, 80 ms, 300 ms → buckets ≤25, ≤100, ≤500.
    assert_eq!(hour["latency_p50_ms"], 25);
    assert_eq!(hour["latency_p95_ms"], 500);
    assert_eq!(hour["ttft_count"], 2);
    assert_eq!(hour["ttft_p50_ms"], 50);
    assert_eq!(hour["ttft_p95_ms"], 50);
    let day = &gpt["day"];
    assert_eq!(
        (&day["attempts"], &day["failures"], &day["errors"]),
        (&Value::from(14), &Value::from(4), &Value::from(5))
    );
    assert_eq!(day["availability"].as_f64().unwrap(), 10.0 / 14.0);
    assert_eq!(gpt["state"], "outage");
    let claude_x = model("anthropic", "claude-x");
    assert_eq!(claude_x["hour"]["availability"].as_f64().unwrap(), 1.0);
    assert_eq!(claude_x["hour"]["ttft_p50_ms"], 1000);
    assert_eq!(claude_x["state"], "operational");
    let providers: Vec<(&str, i64)> = v["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["provider"].as_str().unwrap(),
                p["day"]["attempts"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(providers, [("anthropic", 1), ("openai", 14)]);
    assert_eq!(v["overall"], "outage");
    assert_eq!(v["incidents"][0]["id"], inc.id.as_str());
    assert_eq!(v["incidents"][0]["state"], "monitoring");
    assert_eq!(
        v["incidents"][0]["components"],
        serde_json::json!(["openai", "gpt-x"])
    );

    // The HTML page: public, self-contained, escaped, no tenant data.
    let (code, ct, html) = get(&format!("{url}/status")).await;
    assert_eq!(code, 200);
    assert!(ct.starts_with("text/html"), "{ct}");
    assert!(html.contains("data-state=outage"), "{html}");
    assert!(html.contains("openai / gpt-x"));
    assert!(html.contains("83.33%"));
    assert!(html.contains("Elevated &lt;errors&gt; on gpt-x"));
    assert!(!html.contains("<errors>"));
    assert!(!html.contains("<script") && !html.contains("src="));
    for secret in [
        "acme",
        "beta",
        "acme-secret-provider",
        "beta-claude",
        &acme.id,
        o,
    ] {
        assert!(!html.contains(secret), "{secret} on the public page");
        assert!(!body.contains(secret), "{secret} in status.json");
    }

    // Resolved: off the headline, still listed.
    status
        .update_incident(admin::UpdateIncidentRequest {
            id: inc.id.clone(),
            state: "resolved".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let listed = status
        .list_incidents(admin::ListIncidentsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .incidents;
    assert_eq!(listed.len(), 1);
    assert!(listed[0].resolved_at_ms > 0);

    // Prometheus: usage ingestion counted once per record.
    let (code, ct, metrics) = get(&format!("{url}/metrics")).await;
    assert_eq!(code, 200);
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    assert!(
        metrics.contains(&format!(
            "tollgate_cp_usage_records_total{{result=\"stored\"}} {total}"
        )),
        "{metrics}"
    );
    assert!(metrics.contains(&format!(
        "tollgate_cp_usage_records_total{{result=\"duplicate\"}} {total}"
    )));
}

#[tokio::test]
async fn incidents_are_for_operators_only() {
    let cp = Cp::start().await;
    let mut status = StatusServiceClient::with_interceptor(cp.channel().await, Bearer::none());
    let e = status
        .create_incident(admin::CreateIncidentRequest {
            title: "x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    // The public page needs no token.
    let (code, _, _) = get(&format!("{}/status.json", cp.running().url)).await;
    assert_eq!(code, 200);
}
