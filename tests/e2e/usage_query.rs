//! Usage queries and the request log through the real binaries: calls go
//! through the DP, reach the CP's rollups, and come back through
//! UsageQueryService and the `tollgate usage` CLI.

use std::collections::HashSet;

use serde_json::{json, Value};
use tollgate_e2e::{bin_path, pb, Gateway};

const DAY_MS: i64 = 86_400_000;

/// Splits CSV text (RFC 4180: quoted fields may hold commas, quotes and
/// line breaks) into rows of fields.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(!quoted, "unterminated quoted field");
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

async fn cli(gw: &Gateway, args: &[&str]) -> (String, String) {
    let out = tokio::process::Command::new(bin_path("tollgate"))
        .arg("--cp")
        .arg(gw.cp.url())
        .arg("--token")
        .arg(&gw.cp.admin_token)
        .args(args)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "tollgate {args:?} failed: {stderr}");
    (stdout, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_show_up_in_queries_search_and_export() {
    let gw = Gateway::start().await;
    let mut admin = gw.admin().await;
    // A provider nobody listens on: calls to its model fail with a known code.
    admin
        .providers
        .add_provider(pb::AddProviderRequest {
            tenant: "acme".into(),
            name: "dead".into(),
            kind: "openai".into(),
            base_url: "http://127.0.0.1:9/v1".into(),
            api_key: "sk-dead-000000000000".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    admin
        .models
        .add_model(pb::AddModelRequest {
            tenant: "acme".into(),
            name: "dead-model".into(),
            provider: "dead".into(),
            upstream_model: "x".into(),
        })
        .await
        .unwrap();
    admin
        .tenants
        .create_tenant(pb::CreateTenantRequest {
            name: "other".into(),
        })
        .await
        .unwrap();
    let v = gw.cp.version().await;
    gw.cp.wait_for_ack("dp-1", v).await;

    let mut request_ids = HashSet::new();
    for i in 0..4 {
        let resp = gw
            .post(
                "/v1/chat/completions",
                &json!({"model": "gpt-test", "stream": i % 2 == 1,
                        "messages": [{"role": "user", "content": "count me please"}]}),
            )
            .await;
        assert_eq!(resp.status(), 200);
        request_ids.insert(resp.headers()["x-request-id"].to_str().unwrap().to_string());
        let _ = resp.bytes().await.unwrap();
    }
    let resp = gw
        .post(
            "/v1/chat/completions",
            &json!({"model": "dead-model", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(resp.status(), 502);
    let failed_id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    request_ids.insert(failed_id.clone());
    gw.wait_for_usage_calls(5).await;

    // The request log: the failed call, found by its error code.
    let found = admin
        .usage_query
        .search_requests(pb::SearchRequestsRequest {
            tenant: "acme".into(),
            error_code: "upstream_connect_error".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.requests.len(), 1, "{found:?}");
    let failed = &found.requests[0];
    assert_eq!(failed.request_id, failed_id);
    assert_eq!(failed.model, "dead-model");
    assert_eq!(failed.status_code, 502);
    assert_eq!(failed.api, "chat.completions");
    assert_eq!(failed.ttft_ms, -1);
    assert!(!failed.attempts.is_empty());
    assert!(found.next_page_token.is_empty());

    // All five, newest first, two per page.
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let page = admin
            .usage_query
            .search_requests(pb::SearchRequestsRequest {
                tenant: "acme".into(),
                page_size: 2,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        all.extend(page.requests);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(all.len(), 5);
    assert!(all
        .windows(2)
        .all(|w| w[0].started_at_ms >= w[1].started_at_ms));
    let streams: Vec<_> = all.iter().filter(|r| r.stream).collect();
    assert_eq!(streams.len(), 2);
    for r in &all {
        if r.stream {
            // Streams record when their first chunk went out.
            assert!(r.ttft_ms >= 0 && r.ttft_ms <= r.latency_ms, "{r:?}");
        } else {
            assert_eq!(r.ttft_ms, -1, "{r:?}");
        }
    }

    // Key and provider filters take names as well as ids.
    let by_names = admin
        .usage_query
        .search_requests(pb::SearchRequestsRequest {
            tenant: "acme".into(),
            key_id: "backend".into(),
            provider_id: "dead".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<_> = by_names
        .requests
        .iter()
        .map(|r| r.request_id.as_str())
        .collect();
    assert_eq!(ids, [failed_id.as_str()]);
    assert!(all.iter().all(|r| r.key_id == gw.key_id));

    // Aggregates per model per day equal the calls made.
    let day = all[0].started_at_ms.div_euclid(DAY_MS) * DAY_MS;
    assert!(all.iter().all(|r| r.started_at_ms >= day));
    let usage = admin
        .usage_query
        .query_usage(pb::QueryUsageRequest {
            tenant: "acme".into(),
            group_by: vec![
                pb::UsageDimension::Day as i32,
                pb::UsageDimension::Model as i32,
            ],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let rows: Vec<_> = usage
        .buckets
        .iter()
        .map(|b| (b.bucket_start_ms, b.model.as_str(), b.calls, b.errors))
        .collect();
    assert_eq!(
        rows,
        [(day, "dead-model", 1, 1), (day, "gpt-test", 4, 0)],
        "{usage:?}"
    );
    let gpt = &usage.buckets[1];
    // "count me please": 6 prompt tokens; the mock's reply: 12.
    assert_eq!((gpt.prompt_tokens, gpt.completion_tokens), (4 * 6, 4 * 12));
    assert_eq!(gpt.ttft_count, 2);
    assert!(gpt.latency_ms_sum > 0);

    // Another tenant sees nothing of acme's.
    let other = admin
        .usage_query
        .query_usage(pb::QueryUsageRequest {
            tenant: "other".into(),
            group_by: vec![pb::UsageDimension::Model as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(other.buckets.is_empty());
    let other_log = admin
        .usage_query
        .search_requests(pb::SearchRequestsRequest {
            tenant: "other".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(other_log.requests.is_empty());

    // CLI: CSV export, one row per call.
    let (csv, progress) = cli(
        &gw,
        &["usage", "export", "--tenant", "acme", "--format", "csv"],
    )
    .await;
    assert!(progress.contains("exported 5 calls"), "{progress}");
    let table = parse_csv(&csv);
    assert_eq!(table.len(), 6, "{csv}");
    let header = &table[0];
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    assert!(table.iter().all(|r| r.len() == header.len()));
    let exported: HashSet<String> = table[1..]
        .iter()
        .map(|r| r[col("request_id")].clone())
        .collect();
    assert_eq!(exported, request_ids);
    let failed_row = table[1..]
        .iter()
        .find(|r| r[col("request_id")] == failed_id)
        .unwrap();
    assert_eq!(failed_row[col("status_code")], "502");
    assert_eq!(failed_row[col("error_code")], "upstream_connect_error");

    // JSON export: the same calls.
    let (json_text, _) = cli(
        &gw,
        &["usage", "export", "--tenant", "acme", "--format", "json"],
    )
    .await;
    let entries: Vec<Value> = serde_json::from_str(&json_text).unwrap();
    let exported: HashSet<String> = entries
        .iter()
        .map(|e| e["request_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(exported, request_ids);

    // CLI table: per day and model.
    let (out, _) = cli(
        &gw,
        &[
            "usage",
            "query",
            "--tenant",
            "acme",
            "--group-by",
            "day,model",
        ],
    )
    .await;
    let gpt_line = out.lines().find(|l| l.contains("gpt-test")).unwrap();
    let cells: Vec<&str> = gpt_line.split_whitespace().collect();
    assert_eq!(cells[1..4], ["gpt-test", "4", "0"], "{out}");
    assert!(out.contains("5 calls"), "{out}");
    let (out, _) = cli(&gw, &["usage", "requests", "--tenant", "acme", "--errors"]).await;
    assert!(
        out.contains(&failed_id) && out.contains("upstream_connect_error"),
        "{out}"
    );
    assert_eq!(out.lines().count(), 2, "{out}");
}
