//! Every proxied call becomes exactly one usage record in the control plane.

use std::collections::HashSet;

use serde_json::json;
use tollgate_e2e::{pb, Gateway};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_arrives_exactly_once() {
    let gw = Gateway::start().await;
    let mut request_ids = HashSet::new();
    for i in 0..5 {
        let stream = i % 2 == 1;
        let resp = gw
            .post(
                "/v1/chat/completions",
                &json!({"model": "gpt-test", "stream": stream,
                        "messages": [{"role": "user", "content": "count me please"}]}),
            )
            .await;
        assert_eq!(resp.status(), 200);
        request_ids.insert(resp.headers()["x-request-id"].to_str().unwrap().to_string());
        let _ = resp.bytes().await.unwrap();
    }
    let rows = gw.wait_for_usage_calls(5).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(row.model, "gpt-test");
    assert_eq!(row.calls, 5);
    assert_eq!(row.errors, 0);
    // "count me please": 3 words + 3 per message; the reply has 12 words.
    assert_eq!(row.prompt_tokens, 5 * 6);
    assert_eq!(row.completion_tokens, 5 * 12);

    // Give a duplicate report (if the DP re-sent a batch) time to land, then
    // check again: still exactly one record per call.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let records = gw
        .admin()
        .await
        .usage
        .list_usage_records(pb::ListUsageRecordsRequest {
            tenant: "acme".into(),
            limit: 100,
        })
        .await
        .unwrap()
        .into_inner()
        .records;
    assert_eq!(records.len(), 5);
    let seen: HashSet<String> = records.iter().map(|r| r.request_id.clone()).collect();
    assert_eq!(seen, request_ids);
    for r in &records {
        assert_eq!(r.key_id, gw.key_id);
        assert_eq!(r.tenant_id, gw.tenant_id);
        assert_eq!(r.status_code, 200);
        assert_eq!(r.node_id, "dp-1");
    }
    assert_eq!(records.iter().filter(|r| r.stream).count(), 2);
}
