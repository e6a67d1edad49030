//! Two control-plane replicas on one real Postgres, coordinated through a
//! real etcd, with three data planes spread over them (one of them
//! tenant-scoped, in a group), then faults:
//!
//! (i) a config change made on replica A reaches a data plane connected to
//!     replica B within a second (etcd change notification; without it the
//!     5 s database poll would be the bound);
//! (ii) kill -9 of the leader: the other replica takes the background jobs
//!     over within the lease TTL, the dead replica's data planes move to the
//!     survivor, and config changes still propagate;
//! (iii) Postgres stopped under load: the data planes keep serving, usage
//!     arrives once Postgres is back, and the stored usage equals the calls
//!     the upstream served — none lost, none counted twice;
//! (iv) the tenant-scoped data plane still knows only its tenant.
//!
//! Finally SIGTERM of the survivor: it resigns and exits cleanly.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tollgate_e2e::cluster::{Etcd, Postgres};
use tollgate_e2e::{
    http, pb, AdminClient, ControlPlane, DataPlane, MockOptions, MockServer, UPSTREAM_KEY,
};

async fn chat(dp_url: &str, key: &str) -> u16 {
    http()
        .post(format!("{dp_url}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

async fn create_key(admin: &mut AdminClient, tenant: &str, name: &str) -> String {
    admin
        .keys
        .create_key(pb::CreateKeyRequest {
            tenant: tenant.into(),
            name: name.into(),
            expires_at_ms: 0,
            providers: Vec::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .secret
}

/// Tenant `name` with provider `up` (the mock), model `gpt-test` and a key.
async fn tenant(admin: &mut AdminClient, name: &str, mock: &MockServer) -> String {
    admin
        .tenants
        .create_tenant(pb::CreateTenantRequest { name: name.into() })
        .await
        .unwrap();
    admin
        .providers
        .add_provider(pb::AddProviderRequest {
            tenant: name.into(),
            name: "up".into(),
            kind: "openai".into(),
            base_url: mock.base_url.clone(),
            api_key: UPSTREAM_KEY.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    admin
        .models
        .add_model(pb::AddModelRequest {
            tenant: name.into(),
            name: "gpt-test".into(),
            provider: "up".into(),
            upstream_model: "mock-small".into(),
        })
        .await
        .unwrap();
    create_key(admin, name, "app").await
}

/// Node ids connected to `cp`.
async fn connected(cp: &ControlPlane) -> Vec<String> {
    let Ok(mut admin) = AdminClient::connect(cp.url(), &cp.admin_token).await else {
        return Vec::new();
    };
    match admin
        .data_planes
        .get_config_status(pb::GetConfigStatusRequest {})
        .await
    {
        Ok(s) => s
            .into_inner()
            .data_planes
            .into_iter()
            .filter(|d| d.connected)
            .map(|d| d.node_id)
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Polls `check` every 20 ms until true; panics after `timeout`.
async fn eventually<F: AsyncFnMut() -> bool>(
    what: &str,
    timeout: Duration,
    mut check: F,
) -> Duration {
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < timeout, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn usage_calls(admin: &mut AdminClient, tenant: &str) -> Option<i64> {
    let rows = admin
        .usage
        .get_usage(pb::GetUsageRequest {
            tenant: tenant.into(),
            ..Default::default()
        })
        .await
        .ok()?
        .into_inner()
        .rows;
    Some(rows.iter().map(|r| r.calls).sum())
}

fn gauge(metrics: &str, name: &str) -> Option<i64> {
    let prefix = format!("tollgate_cp_cluster{{gauge=\"{name}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_share_config_and_jobs_and_survive_faults() {
    let dir = tempfile::tempdir().unwrap();
    let Some(_etcd) = Etcd::start(&dir.path().join("etcd")).await else {
        return;
    };
    let Some(pg) = Postgres::start().await else {
        return;
    };
    let mock = MockServer::start_with(
        "127.0.0.1:0".parse().unwrap(),
        MockOptions {
            required_api_key: Some(UPSTREAM_KEY.into()),
            ..MockOptions::recording()
        },
    )
    .await
    .unwrap();
    let etcd_url = _etcd.url.clone();
    let mut a =
        ControlPlane::start_replica(&dir.path().join("cp-a"), &pg.url(), &etcd_url, None).await;
    let a_dir = a.data_dir.clone();
    let mut b =
        ControlPlane::start_replica(&dir.path().join("cp-b"), &pg.url(), &etcd_url, Some(&a_dir))
            .await;
    let mut admin_a = a.admin().await;
    let mut admin_b = b.admin().await;
    let acme_key = tenant(&mut admin_a, "acme", &mock).await;
    // Written through B: both replicas write to the same database.
    let beta_key = tenant(&mut admin_b, "beta", &mock).await;
    admin_a
        .dp_groups
        .create_data_plane_group(pb::CreateDataPlaneGroupRequest {
            name: "beta-onprem".into(),
            tenant: "beta".into(),
        })
        .await
        .unwrap();
    let beta_token = admin_a
        .dp_groups
        .create_data_plane_token(pb::CreateDataPlaneTokenRequest {
            group: "beta-onprem".into(),
            name: "rack-1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .secret;

    // dp-1 prefers A; dp-2 and the tenant-scoped dp-3 prefer B.
    let ab = format!("{},{}", a.url(), b.url());
    let ba = format!("{},{}", b.url(), a.url());
    let dp1 = DataPlane::start(&ab, &a.dp_token, &dir.path().join("dp1"), "dp-1", &[]).await;
    let dp2 = DataPlane::start(&ba, &a.dp_token, &dir.path().join("dp2"), "dp-2", &[]).await;
    let dp3 = DataPlane::start(&ba, &beta_token, &dir.path().join("dp3"), "dp-3", &[]).await;
    eventually(
        "data planes on their preferred replicas",
        Duration::from_secs(10),
        async || {
            let (on_a, on_b) = (connected(&a).await, connected(&b).await);
            on_a.contains(&"dp-1".to_string())
                && on_b.contains(&"dp-2".to_string())
                && on_b.contains(&"beta-onprem/dp-3".to_string())
        },
    )
    .await;
    eventually(
        "every data plane serves its tenant",
        Duration::from_secs(10),
        async || {
            chat(dp1.url(), &acme_key).await == 200
                && chat(dp2.url(), &beta_key).await == 200
                && chat(dp3.url(), &beta_key).await == 200
        },
    )
    .await;
    // (iv) The tenant-scoped data plane does not know acme.
    assert_eq!(chat(dp3.url(), &acme_key).await, 401);

    // (i) A key created on A works on dp-2 (subscribed to B) within a second.
    let started = Instant::now();
    let late_key = create_key(&mut admin_a, "acme", "late").await;
    eventually(
        "a change on A reaches dp-2 on B",
        Duration::from_secs(10),
        async || chat(dp2.url(), &late_key).await == 200,
    )
    .await;
    let took = started.elapsed();
    eprintln!("cluster: a change on A reached dp-2 on B in {took:?}");
    assert!(
        took < Duration::from_secs(1),
        "a change on A took {took:?} to reach a data plane on B"
    );
    assert!(connected(&b).await.contains(&"dp-2".to_string()));

    // Exactly one leader runs the background jobs.
    eventually("one leader", Duration::from_secs(10), async || {
        let (ha, hb) = (a.health().await, b.health().await);
        ha["leader"].as_bool() != hb["leader"].as_bool()
    })
    .await;
    let a_leads = a.health().await["leader"] == true;
    let (leader, survivor) = if a_leads {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    let (lm, sm) = (leader.metrics().await, survivor.metrics().await);
    assert_eq!(gauge(&lm, "leader"), Some(1), "{lm}");
    assert_eq!(gauge(&lm, "background_jobs"), Some(2), "{lm}");
    assert_eq!(gauge(&lm, "etcd_up"), Some(1), "{lm}");
    assert_eq!(gauge(&sm, "leader"), Some(0), "{sm}");
    assert_eq!(gauge(&sm, "background_jobs"), Some(0), "{sm}");

    // (ii) kill -9 the leader: the survivor takes the jobs over within the
    // lease TTL (2 s here) plus a renewal, and every data plane moves to it.
    leader.proc.kill().await;
    let took = eventually("the survivor leads", Duration::from_secs(10), async || {
        let m = survivor.metrics().await;
        gauge(&m, "leader") == Some(1) && gauge(&m, "background_jobs") == Some(2)
    })
    .await;
    eprintln!("cluster: the survivor took the background jobs over in {took:?}");
    assert!(took < Duration::from_secs(5), "takeover took {took:?}");
    assert!(survivor
        .proc
        .log_text()
        .contains("elected leader: this replica runs the background jobs"));
    eventually(
        "every data plane on the survivor",
        Duration::from_secs(10),
        async || {
            let on = connected(survivor).await;
            ["dp-1", "dp-2", "beta-onprem/dp-3"]
                .iter()
                .all(|n| on.contains(&n.to_string()))
        },
    )
    .await;
    let mut admin = survivor.admin().await;
    let after_acme = create_key(&mut admin, "acme", "after-failover").await;
    let after_beta = create_key(&mut admin, "beta", "after-failover").await;
    eventually(
        "changes reach every data plane",
        Duration::from_secs(3),
        async || {
            chat(dp1.url(), &after_acme).await == 200
                && chat(dp2.url(), &after_acme).await == 200
                && chat(dp3.url(), &after_beta).await == 200
        },
    )
    .await;

    // (iii) Postgres down for a while under load: every call is served.
    // First let the usage of the calls so far settle: every call the
    // upstream served is one usage record.
    eventually(
        "earlier usage settles",
        Duration::from_secs(20),
        async || {
            let served = i64::try_from(mock.chat_calls()).unwrap();
            let acme = usage_calls(&mut admin, "acme").await.unwrap_or(0);
            let beta = usage_calls(&mut admin, "beta").await.unwrap_or(0);
            acme + beta == served
        },
    )
    .await;
    let before = mock.chat_calls();
    let base_acme = usage_calls(&mut admin, "acme").await.unwrap();
    let base_beta = usage_calls(&mut admin, "beta").await.unwrap();
    let ok_acme = Arc::new(AtomicU64::new(0));
    let ok_beta = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    // The fault: Postgres down for a whole minute under load.
    let outage = Duration::from_secs(60);
    let load_for = outage + Duration::from_secs(6);
    let mut load = Vec::new();
    for (url, key, ok) in [
        (dp1.url().to_string(), acme_key.clone(), ok_acme.clone()),
        (dp2.url().to_string(), acme_key.clone(), ok_acme.clone()),
        (dp3.url().to_string(), beta_key.clone(), ok_beta.clone()),
    ] {
        let failed = failed.clone();
        load.push(tokio::spawn(async move {
            let start = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            while start.elapsed() < load_for {
                tick.tick().await;
                if chat(&url, &key).await == 200 {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    pg.stop().await;
    let down_at = Instant::now();
    eventually(
        "readiness reports the database down",
        Duration::from_secs(5),
        async || survivor.ready_status().await == 503,
    )
    .await;
    tokio::time::sleep(outage.saturating_sub(down_at.elapsed())).await;
    pg.start_server().await;
    for l in load {
        l.await.unwrap();
    }
    let (ok_acme, ok_beta) = (
        ok_acme.load(Ordering::Relaxed),
        ok_beta.load(Ordering::Relaxed),
    );
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "calls failed while Postgres was down"
    );
    assert!(
        ok_acme >= 400 && ok_beta >= 200,
        "load too small: {ok_acme} + {ok_beta}"
    );
    let served = u64::try_from(mock.chat_calls() - before).unwrap();
    eprintln!(
        "cluster: {ok_acme} + {ok_beta} calls served with Postgres down for {} s of {}",
        outage.as_secs(),
        load_for.as_secs()
    );
    assert_eq!(
        served,
        ok_acme + ok_beta,
        "the upstream served every call once"
    );
    eventually(
        "usage of every call arrives",
        Duration::from_secs(90),
        async || {
            usage_calls(&mut admin, "acme").await == Some(base_acme + ok_acme as i64)
                && usage_calls(&mut admin, "beta").await == Some(base_beta + ok_beta as i64)
        },
    )
    .await;
    assert_eq!(survivor.ready_status().await, 200);
    // Nothing arrives twice later (the spools are drained, ids are unique).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        usage_calls(&mut admin, "acme").await,
        Some(base_acme + ok_acme as i64)
    );
    assert_eq!(
        usage_calls(&mut admin, "beta").await,
        Some(base_beta + ok_beta as i64)
    );

    // SIGTERM: the last replica resigns and exits cleanly.
    let status = survivor.proc.terminate().await.unwrap();
    assert!(status.success(), "{status:?}");
    assert!(survivor.proc.log_text().contains("resigned leadership"));
    drop(admin_a);
    drop(admin_b);
}

/// The rate-limit quota ledger is the shared database, not a replica's
/// memory: two replicas, a data plane on each, RPS 10 on one key and 16
/// callers hammering it for 6 whole one-second windows. The data planes
/// together are admitted at most the limit per window (docs/rate-limits.md,
/// "The bound": 0 over with the control plane up, whatever the number of
/// replicas) and at least 95 % of it (no starvation). With a ledger per
/// replica each replica would grant the whole limit to its own data plane,
/// about twice the limit per window, and the first assertion fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_grant_one_rate_limit_from_one_ledger() {
    const LIMIT: i64 = 10;
    const WINDOWS: i64 = 6;
    let dir = tempfile::tempdir().unwrap();
    let Some(etcd) = Etcd::start(&dir.path().join("etcd")).await else {
        return;
    };
    let Some(pg) = Postgres::start().await else {
        return;
    };
    let mock = MockServer::start_with(
        "127.0.0.1:0".parse().unwrap(),
        MockOptions {
            required_api_key: Some(UPSTREAM_KEY.into()),
            ..MockOptions::recording()
        },
    )
    .await
    .unwrap();
    let a = ControlPlane::start_replica(&dir.path().join("cp-a"), &pg.url(), &etcd.url, None).await;
    let b = ControlPlane::start_replica(
        &dir.path().join("cp-b"),
        &pg.url(),
        &etcd.url,
        Some(&a.data_dir),
    )
    .await;
    let mut admin = a.admin().await;
    let key = tenant(&mut admin, "acme", &mock).await;
    let dp1 = DataPlane::start(a.url(), &a.dp_token, &dir.path().join("dp1"), "dp-1", &[]).await;
    let dp2 = DataPlane::start(b.url(), &a.dp_token, &dir.path().join("dp2"), "dp-2", &[]).await;
    eventually(
        "each data plane on its replica",
        Duration::from_secs(10),
        async || {
            connected(&a).await.contains(&"dp-1".to_string())
                && connected(&b).await.contains(&"dp-2".to_string())
        },
    )
    .await;
    admin
        .rate_limits
        .set_rate_limit(pb::SetRateLimitRequest {
            tenant: "acme".into(),
            scope: Some(pb::RateLimitScope {
                kind: "key".into(),
                target: "app".into(),
            }),
            limits: Some(pb::RateLimitValues {
                requests_per_second: LIMIT as u64,
                ..Default::default()
            }),
            tier: String::new(),
        })
        .await
        .unwrap();
    // Both data planes enforce the limit (their calls here fall in windows
    // before the measured ones).
    for dp in [&dp1, &dp2] {
        eventually("the limit reaches both data planes", Duration::from_secs(10), async || {
            let r = http()
                .post(format!("{}/v1/chat/completions", dp.url()))
                .bearer_auth(&key)
                .json(&json!({"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await
                .unwrap();
            r.headers()
                .get("x-ratelimit-limit-requests")
                .is_some_and(|v| v == "10")
        })
        .await;
    }

    let now_ms = tollgate_core::time::now_ms;
    // Start just after a window begins; stop sending just before the last
    // one ends, so every admitted call falls in one of the WINDOWS windows.
    let start = (now_ms() / 1_000 + 1) * 1_000 + 30;
    let stop = start - 30 + WINDOWS * 1_000 - 120;
    tokio::time::sleep(Duration::from_millis((start - now_ms()).max(0) as u64)).await;
    let admitted = Arc::new(AtomicU64::new(0));
    let limited = Arc::new(AtomicU64::new(0));
    let mut callers = Vec::new();
    for url in [dp1.url().to_string(), dp2.url().to_string()] {
        for _ in 0..8 {
            let (url, key) = (url.clone(), key.clone());
            let (admitted, limited) = (admitted.clone(), limited.clone());
            callers.push(tokio::spawn(async move {
                while now_ms() < stop {
                    match chat(&url, &key).await {
                        200 => admitted.fetch_add(1, Ordering::Relaxed),
                        429 => limited.fetch_add(1, Ordering::Relaxed),
                        other => panic!("unexpected status {other}"),
                    };
                }
            }));
        }
    }
    for c in callers {
        c.await.unwrap();
    }
    let (ok, refused) = (
        admitted.load(Ordering::Relaxed) as i64,
        limited.load(Ordering::Relaxed),
    );
    let allowed = LIMIT * WINDOWS;
    eprintln!("cluster quota: {ok} admitted, {refused} refused, {allowed} allowed");
    assert!(refused > 0, "the callers never hit the limit");
    assert!(
        ok <= allowed,
        "{ok} admitted across two replicas, limit {allowed}"
    );
    assert!(ok * 100 >= allowed * 95, "only {ok} of {allowed} admitted");
}
