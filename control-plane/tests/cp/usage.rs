//! Usage ingestion (idempotent) and the usage queries.

use tollgate_proto::admin::v1 as admin;
use tollgate_proto::sync::v1 as pb;
use tonic::Code;

use crate::harness::Cp;

fn record(
    id: &str,
    tenant_id: &str,
    model: &str,
    key: &str,
    started: i64,
    status: u32,
) -> pb::UsageRecord {
    pb::UsageRecord {
        id: id.into(),
        request_id: format!("req_{id}"),
        tenant_id: tenant_id.into(),
        key_id: key.into(),
        model: model.into(),
        provider_id: "pv_x".into(),
        upstream_model: model.into(),
        started_at_ms: started,
        latency_ms: 250,
        status_code: status,
        error_code: if status >= 400 {
            "rate_limited".into()
        } else {
            String::new()
        },
        stream: false,
        prompt_tokens: 100,
        completion_tokens: 40,
        cache_read_tokens: 20,
        cache_write_tokens: 0,
        reasoning_tokens: 10,
        cost_micros: 1_500,
        attempts: vec![pb::UpstreamAttempt {
            provider_id: "pv_x".into(),
            upstream_model: model.into(),
            status_code: status,
            latency_ms: 250,
            error_code: String::new(),
        }],
        ..Default::default()
    }
}

#[tokio::test]
async fn same_batch_twice_is_stored_once() {
    let cp = Cp::start().await;
    let mut a = cp.admin().await;
    let t = a.tenant("acme").await;
    let mut sync = cp.sync().await;
    let batch = pb::UsageBatch {
        node_id: "dp-1".into(),
        records: vec![
            record("ur_1", &t.id, "gpt-4o", "ck_a", 1_000, 200),
            record("ur_2", &t.id, "gpt-4o", "ck_b", 2_000, 429),
            record("ur_3", &t.id, "mini", "ck_a", 3_000, 200),
        ],
    };
    let first = sync.report_usage(batch.clone()).await.unwrap().into_inner();
    assert_eq!(first.stored_ids, ["ur_1", "ur_2", "ur_3"]);
    assert_eq!(first.duplicates, 0);
    let second = sync.report_usage(batch.clone()).await.unwrap().into_inner();
    assert_eq!(second.stored_ids, ["ur_1", "ur_2", "ur_3"]);
    assert_eq!(second.duplicates, 3);

    let usage = a
        .usage
        .get_usage(admin::GetUsageRequest {
            tenant: "acme".into(),
            since_ms: 0,
            until_ms: 0,
            by_key: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(usage.rows.len(), 2);
    let gpt = &usage.rows[0];
    assert_eq!(gpt.model, "gpt-4o");
    assert_eq!(gpt.key_id, "");
    assert_eq!((gpt.calls, gpt.errors), (2, 1));
    assert_eq!(
        (gpt.prompt_tokens, gpt.completion_tokens, gpt.total_tokens),
        (200, 80, 280)
    );
    assert_eq!(gpt.cost_micros, 3_000);
    assert_eq!(
        (usage.rows[1].model.as_str(), usage.rows[1].calls),
        ("mini", 1)
    );

    // Window [since, until) and grouping by key.
    let by_key = a
        .usage
        .get_usage(admin::GetUsageRequest {
            tenant: t.id.clone(),
            since_ms: 1_000,
            until_ms: 3_000,
            by_key: true,
        })
        .await
        .unwrap()
        .into_inner();
    let rows: Vec<_> = by_key
        .rows
        .iter()
        .map(|r| (r.model.as_str(), r.key_id.as_str(), r.calls))
        .collect();
    assert_eq!(rows, [("gpt-4o", "ck_a", 1), ("gpt-4o", "ck_b", 1)]);

    let recs = a
        .usage
        .list_usage_records(admin::ListUsageRecordsRequest {
            tenant: "acme".into(),
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .records;
    assert_eq!(
        recs.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["ur_3", "ur_2", "ur_1"]
    );
    assert_eq!(recs[1].node_id, "dp-1");
    assert_eq!(recs[1].status_code, 429);
    assert_eq!(recs[1].error_code, "rate_limited");
    assert_eq!(recs[1].attempts.len(), 1);
    assert_eq!(recs[1].attempts[0].status_code, 429);
    assert_eq!(recs[1].attempts[0].latency_ms, 250);
    let two = a
        .usage
        .list_usage_records(admin::ListUsageRecordsRequest {
            tenant: "acme".into(),
            limit: 2,
        })
        .await
        .unwrap()
        .into_inner()
        .records;
    assert_eq!(two.len(), 2);
}

#[tokio::test]
async fn invalid_record_rejects_the_whole_batch() {
    let cp = Cp::start().await;
    let mut a = cp.admin().await;
    let t = a.tenant("acme").await;
    let mut sync = cp.sync().await;
    let e = sync
        .report_usage(pb::UsageBatch {
            node_id: "dp-1".into(),
            records: vec![
                record("ur_ok", &t.id, "m", "k", 1, 200),
                record("ur_bad", "", "m", "k", 1, 200),
            ],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("ur_bad"), "{}", e.message());
    let e = sync
        .report_usage(pb::UsageBatch {
            node_id: "dp-1".into(),
            records: vec![record("", &t.id, "m", "k", 1, 200)],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let too_many = (0..1001)
        .map(|i| record(&format!("ur_{i}"), &t.id, "m", "k", 1, 200))
        .collect();
    let e = sync
        .report_usage(pb::UsageBatch {
            node_id: "dp-1".into(),
            records: too_many,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    // Nothing of the rejected batches was stored.
    let recs = a
        .usage
        .list_usage_records(admin::ListUsageRecordsRequest {
            tenant: "acme".into(),
            limit: 10,
        })
        .await
        .unwrap()
        .into_inner()
        .records;
    assert!(recs.is_empty());
}
