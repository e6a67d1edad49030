//! Usage rollups, queries, request log and retention, on every backend.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tollgate_core::usage::Usage;

use super::test_backends::test_stores;
use super::usage_rollup::hour_floor;
use super::*;

const DAY: i64 = 24 * HOUR_MS;
/// 2026-11-20 00:00 UTC.
const T0: i64 = 1_763_596_800_000;

fn random_record(rng: &mut StdRng, n: usize) -> UsageRecord {
    let pick = |rng: &mut StdRng, xs: &[&str]| xs[rng.gen_range(0..xs.len())].to_owned();
    let status = [200, 200, 200, 429, 502][rng.gen_range(0..5)];
    UsageRecord {
        id: format!("ur_{n:05}"),
        request_id: format!("req_{n}"),
        tenant_id: pick(rng, &["tn_a", "tn_b"]),
        key_id: pick(rng, &["ck_1", "ck_2", "ck_3"]),
        model: pick(rng, &["gpt", "claude", "gemini"]),
        provider_id: pick(rng, &["pv_x", "pv_y"]),
        upstream_model: "up".into(),
        started_at_ms: T0 + rng.gen_range(0..3 * DAY),
        latency_ms: rng.gen_range(1..5000),
        status_code: status,
        error_code: if status == 200 {
            String::new()
        } else {
            format!("e{status}")
        },
        stream: rng.gen_bool(0.5),
        usage: Usage {
            prompt_tokens: rng.gen_range(0..10_000),
            completion_tokens: rng.gen_range(0..10_000),
            cache_read_tokens: rng.gen_range(0..100),
            cache_write_tokens: rng.gen_range(0..100),
            reasoning_tokens: rng.gen_range(0..100),
        },
        cost_micros: rng.gen_range(0..1_000_000),
        node_id: "dp-1".into(),
        received_at_ms: T0 + 3 * DAY,
        attempts: Vec::new(),
        ttft_ms: if rng.gen_bool(0.5) {
            rng.gen_range(0..900)
        } else {
            -1
        },
        api: "chat.completions".into(),
        guardrail_verdicts: Vec::new(),
        lease_id: String::new(),
        key_lease_id: String::new(),
        cache_hit: None,
    }
}

fn all_time(group: Dimensions) -> RollupQuery {
    RollupQuery {
        since_ms: 0,
        until_ms: hour_floor(i64::MAX / 2),
        group,
        ..Default::default()
    }
}

/// What `query` must return, computed from the raw records in Rust.
fn expected(records: &[UsageRecord], tenant: &str, q: &RollupQuery) -> Vec<RollupRow> {
    let mut groups: BTreeMap<(i64, String, String, String), UsageTotals> = BTreeMap::new();
    for r in records.iter().filter(|r| r.tenant_id == tenant) {
        let hour = hour_floor(r.started_at_ms);
        if hour < q.since_ms || hour >= q.until_ms {
            continue;
        }
        if q.model.as_ref().is_some_and(|m| *m != r.model)
            || q.key_id.as_ref().is_some_and(|k| *k != r.key_id)
            || q.provider_id.as_ref().is_some_and(|p| *p != r.provider_id)
        {
            continue;
        }
        let bucket = match q.group.time {
            TimeBucket::None => 0,
            TimeBucket::Hour => hour,
            TimeBucket::Day { offset_hours } => {
                let shift = i64::from(offset_hours) * HOUR_MS;
                (hour + shift).div_euclid(DAY) * DAY - shift
            }
        };
        let dim = |on: bool, v: &str| if on { v.to_owned() } else { String::new() };
        let key = (
            bucket,
            dim(q.group.model, &r.model),
            dim(q.group.key, &r.key_id),
            dim(q.group.provider, &r.provider_id),
        );
        groups
            .entry(key)
            .or_default()
            .add(&UsageTotals::of_record(r));
    }
    groups
        .into_iter()
        .map(|((b, m, k, p), totals)| RollupRow {
            bucket_start_ms: b,
            model: m,
            key_id: k,
            provider_id: p,
            totals,
        })
        .collect()
}

fn sorted(mut rows: Vec<RollupRow>) -> Vec<RollupRow> {
    rows.sort_by(|a, b| {
        (a.bucket_start_ms, &a.model, &a.key_id, &a.provider_id).cmp(&(
            b.bucket_start_ms,
            &b.model,
            &b.key_id,
            &b.provider_id,
        ))
    });
    rows
}

/// Every page of a rollup query, `page` rows at a time.
async fn all_pages(store: &Store, tenant: &str, q: &RollupQuery, page: i64) -> Vec<RollupRow> {
    let mut out: Vec<RollupRow> = Vec::new();
    loop {
        let cursor = out.last().map(RollupRow::cursor);
        let rows = store
            .query_usage_rollups(tenant, q, cursor.as_ref(), page)
            .await
            .unwrap();
        let done = (rows.len() as i64) < page;
        out.extend(rows);
        if done {
            return out;
        }
    }
}

fn groupings() -> Vec<Dimensions> {
    let mut v = Vec::new();
    for time in [
        TimeBucket::None,
        TimeBucket::Hour,
        TimeBucket::Day { offset_hours: 0 },
        TimeBucket::Day { offset_hours: -5 },
        TimeBucket::Day { offset_hours: 9 },
    ] {
        for bits in 0..8 {
            v.push(Dimensions {
                time,
                model: bits & 1 != 0,
                key: bits & 2 != 0,
                provider: bits & 4 != 0,
            });
        }
    }
    v
}

#[tokio::test]
async fn rollups_equal_sums_over_raw_records_with_duplicates() {
    for seed in [1_u64, 2, 3] {
        for t in test_stores().await {
            let mut rng = StdRng::seed_from_u64(seed);
            let records: Vec<UsageRecord> = (0..300)
                .map(|n| random_record(&mut rng, n + seed as usize * 1000))
                .collect();
            // Random batches; some records are sent again (a lost ack), in
            // later batches and inside the same batch.
            let mut sent = 0;
            let mut duplicates_sent = 0;
            while sent < records.len() {
                let n = rng.gen_range(1..40).min(records.len() - sent);
                let mut batch: Vec<UsageRecord> = records[sent..sent + n].to_vec();
                for _ in 0..rng.gen_range(0..4) {
                    batch.push(records[rng.gen_range(0..sent + n)].clone());
                }
                let resent = batch.len() - n;
                let dup = t.store.insert_usage_records(&batch).await.unwrap();
                assert_eq!(
                    dup as usize, resent,
                    "{}: duplicates acknowledged",
                    t.backend
                );
                duplicates_sent += resent;
                sent += n;
            }
            assert!(duplicates_sent > 0);
            for tenant in ["tn_a", "tn_b", "tn_none"] {
                for group in groupings() {
                    let q = all_time(group);
                    let want = expected(&records, tenant, &q);
                    let got = all_pages(&t.store, tenant, &q, 1000).await;
                    assert_eq!(
                        sorted(got.clone()),
                        want,
                        "{} seed {seed} {tenant} {group:?}",
                        t.backend
                    );
                    let paged = all_pages(&t.store, tenant, &q, 7).await;
                    assert_eq!(paged, got, "{}: pages add up to the whole", t.backend);
                }
                // Windows and filters.
                let q = RollupQuery {
                    since_ms: T0 + 5 * HOUR_MS,
                    until_ms: T0 + DAY + 7 * HOUR_MS,
                    group: Dimensions {
                        time: TimeBucket::Hour,
                        model: true,
                        ..Default::default()
                    },
                    model: Some("gpt".into()),
                    key_id: Some("ck_2".into()),
                    provider_id: None,
                };
                let got = all_pages(&t.store, tenant, &q, 1000).await;
                assert_eq!(sorted(got), expected(&records, tenant, &q), "{}", t.backend);
            }
        }
    }
}

#[tokio::test]
async fn unaligned_windows_are_rejected() {
    for t in test_stores().await {
        let q = RollupQuery {
            since_ms: 5,
            until_ms: HOUR_MS,
            ..Default::default()
        };
        let e = t
            .store
            .query_usage_rollups("tn_a", &q, None, 10)
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Invalid(_)), "{}", t.backend);
    }
}

fn logged(id: &str, tenant: &str, started: i64, status: u32, error: &str) -> UsageRecord {
    UsageRecord {
        id: id.into(),
        request_id: format!("req-{id}"),
        tenant_id: tenant.into(),
        key_id: "ck_1".into(),
        model: "gpt".into(),
        provider_id: "pv_1".into(),
        upstream_model: "gpt-up".into(),
        started_at_ms: started,
        latency_ms: 30,
        status_code: status,
        error_code: error.into(),
        stream: true,
        usage: Usage::default(),
        cost_micros: 0,
        node_id: "dp-1".into(),
        received_at_ms: started + 10,
        attempts: vec![UsageAttempt {
            provider_id: "pv_1".into(),
            upstream_model: "gpt-up".into(),
            status_code: status,
            latency_ms: 25,
            error_code: error.into(),
        }],
        ttft_ms: 12,
        api: "chat.completions".into(),
        guardrail_verdicts: Vec::new(),
        lease_id: String::new(),
        key_lease_id: String::new(),
        cache_hit: None,
    }
}

async fn all_requests(
    store: &Store,
    tenant: &str,
    f: &RequestFilter,
    page: i64,
) -> Vec<UsageRecord> {
    let mut out: Vec<UsageRecord> = Vec::new();
    loop {
        let cursor = out.last().map(|r| RequestCursor {
            started_at_ms: r.started_at_ms,
            id: r.id.clone(),
        });
        let rows = store
            .search_usage_records(tenant, f, cursor.as_ref(), page)
            .await
            .unwrap();
        let done = (rows.len() as i64) < page;
        out.extend(rows);
        if done {
            return out;
        }
    }
}

#[tokio::test]
async fn request_log_filters_and_pages_newest_first() {
    for t in test_stores().await {
        let s = &t.store;
        let mut batch = Vec::new();
        for i in 0..25_i64 {
            // Pairs share a start time: the id breaks the tie.
            let (status, error) = if i % 5 == 0 {
                (429, "rate_limited")
            } else {
                (200, "")
            };
            batch.push(logged(
                &format!("ur_{i:03}"),
                "tn_a",
                1_000 + i / 2,
                status,
                error,
            ));
        }
        batch.push(logged("ur_b01", "tn_b", 1_005, 500, "upstream_error"));
        s.insert_usage_records(&batch).await.unwrap();

        let all = RequestFilter {
            since_ms: 0,
            until_ms: i64::MAX,
            ..Default::default()
        };
        let one_page = all_requests(s, "tn_a", &all, 1000).await;
        assert_eq!(one_page.len(), 25, "{}", t.backend);
        let ids: Vec<&str> = one_page.iter().map(|r| r.id.as_str()).collect();
        let mut want: Vec<String> = (0..25).map(|i| format!("ur_{i:03}")).collect();
        want.reverse();
        assert_eq!(ids, want, "{}: newest first, id breaks ties", t.backend);
        assert_eq!(
            one_page[0], batch[24],
            "{}: all fields round-trip",
            t.backend
        );
        // Pages of 4 add up to the same list, also when newer calls arrive
        // between pages (they sort before the cursor).
        let first = s.search_usage_records("tn_a", &all, None, 4).await.unwrap();
        s.insert_usage_records(&[logged("ur_new", "tn_a", 9_999, 200, "")])
            .await
            .unwrap();
        let mut paged = first.clone();
        let rest = {
            let c = RequestCursor {
                started_at_ms: first[3].started_at_ms,
                id: first[3].id.clone(),
            };
            let mut out = Vec::new();
            let mut cursor = Some(c);
            loop {
                let rows = s
                    .search_usage_records("tn_a", &all, cursor.as_ref(), 4)
                    .await
                    .unwrap();
                cursor = rows.last().map(|r| RequestCursor {
                    started_at_ms: r.started_at_ms,
                    id: r.id.clone(),
                });
                let done = rows.len() < 4;
                out.extend(rows);
                if done {
                    break out;
                }
            }
        };
        paged.extend(rest);
        assert_eq!(paged, one_page, "{}: stable pages", t.backend);

        let errors = RequestFilter {
            error_code: Some("rate_limited".into()),
            ..all.clone()
        };
        let found = all_requests(s, "tn_a", &errors, 2).await;
        assert_eq!(found.len(), 5, "{}", t.backend);
        assert!(found.iter().all(|r| r.status_code == 429));
        let only_errors = RequestFilter {
            errors_only: true,
            ..all.clone()
        };
        assert_eq!(all_requests(s, "tn_a", &only_errors, 10).await.len(), 5);
        let by_status = RequestFilter {
            status_code: Some(200),
            model: Some("gpt".into()),
            key_id: Some("ck_1".into()),
            provider_id: Some("pv_1".into()),
            ..all.clone()
        };
        assert_eq!(all_requests(s, "tn_a", &by_status, 10).await.len(), 21);
        let window = RequestFilter {
            since_ms: 1_002,
            until_ms: 1_004,
            ..all.clone()
        };
        let w = all_requests(s, "tn_a", &window, 10).await;
        assert_eq!(w.len(), 4, "{}", t.backend);
        assert!(w.iter().all(|r| (1_002..1_004).contains(&r.started_at_ms)));
        let none = RequestFilter {
            model: Some("other".into()),
            ..all.clone()
        };
        assert!(all_requests(s, "tn_a", &none, 10).await.is_empty());

        // Tenant isolation: B sees its one call and none of A's.
        let b = all_requests(s, "tn_b", &all, 100).await;
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].id, "ur_b01");
        let b_errors = all_requests(s, "tn_b", &errors, 100).await;
        assert!(b_errors.is_empty(), "{}", t.backend);
        assert!(all_requests(s, "tn_c", &all, 100).await.is_empty());
    }
}

#[tokio::test]
async fn retention_deletes_raw_records_and_keeps_rollups() {
    for t in test_stores().await {
        let s = &t.store;
        let mut batch = Vec::new();
        for i in 0..30 {
            let mut r = logged(&format!("ur_{i:03}"), "tn_a", T0 + i, 200, "");
            r.usage.prompt_tokens = 10;
            // Two thirds arrived long ago, the rest recently.
            r.received_at_ms = if i < 20 { T0 } else { T0 + 40 * DAY };
            batch.push(r);
        }
        s.insert_usage_records(&batch).await.unwrap();
        let q = all_time(Dimensions {
            time: TimeBucket::Day { offset_hours: 0 },
            model: true,
            ..Default::default()
        });
        let before = all_pages(s, "tn_a", &q, 100).await;
        assert_eq!(before.len(), 1);
        assert_eq!(before[0].totals.calls, 30);

        // Bounded batches: 7 + 7 + 6, then nothing left to delete.
        let cutoff = T0 + 10 * DAY;
        let mut deleted = Vec::new();
        loop {
            let n = s
                .delete_usage_records_received_before(cutoff, 7)
                .await
                .unwrap();
            deleted.push(n);
            if n == 0 {
                break;
            }
        }
        assert_eq!(deleted, [7, 7, 6, 0], "{}", t.backend);
        let all = RequestFilter {
            since_ms: 0,
            until_ms: i64::MAX,
            ..Default::default()
        };
        let left = all_requests(s, "tn_a", &all, 100).await;
        assert_eq!(left.len(), 10, "{}", t.backend);
        assert!(left.iter().all(|r| r.received_at_ms > cutoff));
        assert_eq!(all_pages(s, "tn_a", &q, 100).await, before, "{}", t.backend);
    }
}

#[tokio::test]
async fn every_query_is_tenant_scoped() {
    for t in test_stores().await {
        let s = &t.store;
        s.insert_usage_records(&[
            logged("ur_a", "tn_a", T0, 200, ""),
            logged("ur_b", "tn_b", T0, 502, "upstream_error"),
        ])
        .await
        .unwrap();
        let counts: HashMap<&str, i64> = [("tn_a", 1), ("tn_b", 1), ("tn_c", 0)].into();
        for (tenant, n) in counts {
            for group in groupings() {
                let rows = all_pages(s, tenant, &all_time(group), 10).await;
                let calls: i64 = rows.iter().map(|r| r.totals.calls).sum();
                assert_eq!(calls, n, "{} {tenant} {group:?}", t.backend);
            }
        }
        let b = all_pages(s, "tn_b", &all_time(Dimensions::default()), 10).await;
        assert_eq!(b[0].totals.errors, 1);
        let a = all_pages(s, "tn_a", &all_time(Dimensions::default()), 10).await;
        assert_eq!(a[0].totals.errors, 0);
    }
}
