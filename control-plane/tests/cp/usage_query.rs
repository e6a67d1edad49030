//! UsageQueryService over gRPC: auth, argument errors, tenant scoping.

use tollgate_proto::admin::v1 as admin;
use tollgate_proto::admin::v1::usage_query_service_client::UsageQueryServiceClient;
use tollgate_proto::sync::v1 as pb;
use tonic::Code;

use crate::harness::{Bearer, Cp};

const HOUR: i64 = 3_600_000;

#[tokio::test]
async fn queries_are_authenticated_validated_and_tenant_scoped() {
    let cp = Cp::start().await;
    let mut a = cp.admin().await;
    let ta = a.tenant("acme").await;
    let tb = a.tenant("beta").await;
    let record = |id: &str, tenant: &str, started: i64, status: u32| pb::UsageRecord {
        id: id.into(),
        tenant_id: tenant.into(),
        key_id: "ck_1".into(),
        model: "gpt".into(),
        provider_id: "pv_1".into(),
        started_at_ms: started,
        status_code: status,
        error_code: if status >= 400 {
            "upstream_status".into()
        } else {
            String::new()
        },
        prompt_tokens: 3,
        ttft_ms: Some(7),
        api: "chat.completions".into(),
        ..Default::default()
    };
    cp.sync()
        .await
        .report_usage(pb::UsageBatch {
            node_id: "dp-1".into(),
            records: vec![
                record("ur_a1", &ta.id, HOUR + 5, 200),
                record("ur_a2", &ta.id, 2 * HOUR + 5, 500),
                record("ur_b1", &tb.id, HOUR + 9, 200),
            ],
        })
        .await
        .unwrap();

    let mut q = UsageQueryServiceClient::with_interceptor(
        cp.channel().await,
        Bearer::new(&cp.running().admin_token),
    );
    let by_hour = |tenant: &str| admin::QueryUsageRequest {
        tenant: tenant.into(),
        group_by: vec![admin::UsageDimension::Hour as i32],
        ..Default::default()
    };
    let acme = q.query_usage(by_hour("acme")).await.unwrap().into_inner();
    let rows: Vec<_> = acme
        .buckets
        .iter()
        .map(|b| {
            (
                b.bucket_start_ms,
                b.calls,
                b.errors,
                b.ttft_ms_sum,
                b.ttft_count,
            )
        })
        .collect();
    assert_eq!(rows, [(HOUR, 1, 0, 7, 1), (2 * HOUR, 1, 1, 7, 1)]);
    // By id as well as by name; beta sees only its own call.
    let beta = q.query_usage(by_hour(&tb.id)).await.unwrap().into_inner();
    assert_eq!(beta.buckets.len(), 1);
    assert_eq!(beta.buckets[0].calls, 1);
    let log = q
        .search_requests(admin::SearchRequestsRequest {
            tenant: "beta".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<_> = log.requests.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["ur_b1"]);
    assert_eq!(log.requests[0].ttft_ms, 7);
    assert_eq!(log.requests[0].api, "chat.completions");

    // A window inside an hour widens to the whole hour.
    let narrow = q
        .query_usage(admin::QueryUsageRequest {
            since_ms: HOUR + 1,
            until_ms: HOUR + 2,
            ..by_hour("acme")
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((narrow.since_ms, narrow.until_ms), (HOUR, 2 * HOUR));
    assert_eq!(narrow.buckets.len(), 1);

    // Pages of one, joined by the token.
    let first = q
        .query_usage(admin::QueryUsageRequest {
            page_size: 1,
            ..by_hour("acme")
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.buckets.len(), 1);
    let second = q
        .query_usage(admin::QueryUsageRequest {
            page_size: 1,
            page_token: first.next_page_token.clone(),
            ..by_hour("acme")
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.buckets[0].bucket_start_ms, 2 * HOUR);
    assert!(second.next_page_token.is_empty());

    let code = |r: Result<tonic::Response<admin::QueryUsageResponse>, tonic::Status>| {
        r.unwrap_err().code()
    };
    assert_eq!(code(q.query_usage(by_hour("nobody")).await), Code::NotFound);
    let unknown_key = admin::QueryUsageRequest {
        key_id: "no-such-key".into(),
        ..by_hour("acme")
    };
    assert_eq!(code(q.query_usage(unknown_key).await), Code::NotFound);
    assert_eq!(
        code(q.query_usage(by_hour("")).await),
        Code::InvalidArgument
    );
    let bad_token = admin::QueryUsageRequest {
        page_token: "garbage!".into(),
        ..by_hour("acme")
    };
    assert_eq!(code(q.query_usage(bad_token).await), Code::InvalidArgument);
    let both = admin::QueryUsageRequest {
        group_by: vec![
            admin::UsageDimension::Hour as i32,
            admin::UsageDimension::Day as i32,
        ],
        ..by_hour("acme")
    };
    assert_eq!(code(q.query_usage(both).await), Code::InvalidArgument);
    let half_hour = admin::QueryUsageRequest {
        tz_offset_minutes: 330,
        ..by_hour("acme")
    };
    assert_eq!(code(q.query_usage(half_hour).await), Code::InvalidArgument);

    let mut anonymous =
        UsageQueryServiceClient::with_interceptor(cp.channel().await, Bearer::none());
    assert_eq!(
        code(anonymous.query_usage(by_hour("acme")).await),
        Code::Unauthenticated
    );
    let dp_token = UsageQueryServiceClient::with_interceptor(
        cp.channel().await,
        Bearer::new(&cp.running().dp_token),
    )
    .search_requests(admin::SearchRequestsRequest {
        tenant: "acme".into(),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert_eq!(dp_token.code(), Code::Unauthenticated);
}
