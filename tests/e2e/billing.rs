//! Billing through the real binaries: prices, discount, exact cost header,
//! ledger charges equal to the usage records, 402 at an exhausted balance in
//! both protocol shapes, redemption codes, freezing, and three data planes
//! hammering one small balance without overdraft.

use std::time::{Duration, Instant};

use serde_json::json;
use tollgate_e2e::{http, pb, DataPlane, Gateway};

/// "count me please" → 6 prompt tokens; the mock answers 12 tokens.
/// ($3 × 6 + $15 × 12) per million × 80 % = 158.4 µ$ → 158 (half up).
const CALL_COST: i64 = 158;
const PRICE_IN: i64 = 3_000_000;
const PRICE_OUT: i64 = 15_000_000;

fn chat() -> serde_json::Value {
    json!({"model": "gpt-test", "max_tokens": 20,
           "messages": [{"role": "user", "content": "count me please"}]})
}

/// Prices gpt-test, sets a 20 % discount and tops the tenant up.
async fn bill(gw: &Gateway, topup_micros: i64) {
    let mut admin = gw.admin().await;
    admin
        .billing
        .set_price(pb::SetPriceRequest {
            tenant: "acme".into(),
            model: "gpt-test".into(),
            provider: String::new(),
            price: Some(pb::PriceValues {
                input_per_mtok: PRICE_IN,
                output_per_mtok: PRICE_OUT,
                max_output_tokens: 50,
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    admin
        .billing
        .set_account(pb::SetAccountRequest {
            tenant: "acme".into(),
            price_multiplier_bps: Some(8_000),
            credit_limit_micros: None,
        })
        .await
        .unwrap();
    let entry = admin
        .billing
        .add_ledger_entry(pb::AddLedgerEntryRequest {
            tenant: "acme".into(),
            kind: "topup".into(),
            amount_micros: topup_micros,
            idempotency_key: "inv-1".into(),
            reference: "invoice 1".into(),
            note: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(entry.balance_after_micros, topup_micros);
    // Resent top-up: counted once.
    let again = admin
        .billing
        .add_ledger_entry(pb::AddLedgerEntryRequest {
            tenant: "acme".into(),
            kind: "topup".into(),
            amount_micros: topup_micros,
            idempotency_key: "inv-1".into(),
            reference: "invoice 1".into(),
            note: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.id, entry.id);
    let version = gw.cp.version().await;
    gw.cp.wait_for_ack("dp-1", version).await;
}

async fn account(gw: &Gateway) -> pb::Account {
    gw.admin()
        .await
        .billing
        .get_account(pb::GetAccountRequest {
            tenant: "acme".into(),
        })
        .await
        .unwrap()
        .into_inner()
}

async fn ledger(gw: &Gateway) -> pb::ListLedgerResponse {
    gw.admin()
        .await
        .billing
        .list_ledger(pb::ListLedgerRequest {
            tenant: "acme".into(),
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

/// Waits until `n` usage records are stored; returns their cost sum.
async fn wait_for_records(gw: &Gateway, n: usize) -> i64 {
    let mut admin = gw.admin().await;
    let start = Instant::now();
    loop {
        let records = admin
            .usage
            .list_usage_records(pb::ListUsageRecordsRequest {
                tenant: "acme".into(),
                limit: 10_000,
            })
            .await
            .unwrap()
            .into_inner()
            .records;
        if records.len() >= n {
            assert_eq!(records.len(), n);
            return records.iter().map(|r| r.cost_micros).sum();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "only {} of {n} usage records arrived",
            records.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reseller_flow_charges_exactly_blocks_at_zero_and_continues_after_redeeming() {
    let gw = Gateway::start().await;
    bill(&gw, 1_000).await;

    // Charged to the micro-dollar until the balance cannot cover a call.
    let mut ok = 0_usize;
    let refused = loop {
        let resp = gw.post("/v1/chat/completions", &chat()).await;
        if resp.status() != 200 {
            break resp;
        }
        assert_eq!(resp.headers()["x-tollgate-cost-micros"], "158");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["usage"]["prompt_tokens"], 6);
        assert_eq!(body["usage"]["completion_tokens"], 12);
        ok += 1;
        assert!(ok < 10, "a 1000 µ$ balance never ran out");
    };
    assert!(ok >= 1, "the first call must be covered");
    assert_eq!(refused.status(), 402);
    let err: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(err["error"]["code"], "insufficient_balance", "{err}");
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Insufficient balance"));
    // Anthropic shape on /v1/messages.
    let resp = gw
        .post(
            "/v1/messages",
            &json!({"model": "gpt-test", "max_tokens": 20,
                    "messages": [{"role": "user", "content": "count me please"}]}),
        )
        .await;
    assert_eq!(resp.status(), 402);
    let err: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(err["type"], "error");
    assert_eq!(err["error"]["type"], "billing_error", "{err}");

    // The ledger charged exactly what the records say, once each.
    let record_costs = wait_for_records(&gw, ok).await;
    assert_eq!(record_costs, CALL_COST * ok as i64);
    let l = ledger(&gw).await;
    assert_eq!(l.totals_by_kind["usage"], -record_costs);
    assert_eq!(l.balance_micros, 1_000 - record_costs);
    assert!(l.entries.iter().all(|e| e.balance_after_micros >= 0));
    assert!(account(&gw).await.balance_micros >= 0);

    // Redeem a code to continue.
    let mut admin = gw.admin().await;
    let codes = admin
        .billing
        .generate_codes(pb::GenerateCodesRequest {
            count: 1,
            value_micros: 1_000_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .codes;
    admin
        .billing
        .redeem_code(pb::RedeemCodeRequest {
            tenant: "acme".into(),
            code: codes[0].clone(),
        })
        .await
        .unwrap();
    // A second redemption (same or another tenant) is refused.
    admin
        .tenants
        .create_tenant(pb::CreateTenantRequest {
            name: "beta".into(),
        })
        .await
        .unwrap();
    for tenant in ["acme", "beta"] {
        let e = admin
            .billing
            .redeem_code(pb::RedeemCodeRequest {
                tenant: tenant.into(),
                code: codes[0].clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
    }
    let resp = gw.post("/v1/chat/completions", &chat()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tollgate-cost-micros"], "158");
    let _ = resp.bytes().await.unwrap();
    let record_costs = wait_for_records(&gw, ok + 1).await;
    let l = ledger(&gw).await;
    assert_eq!(l.totals_by_kind["usage"], -record_costs);
    assert_eq!(l.totals_by_kind["redemption"], 1_000_000);
    assert_eq!(l.balance_micros, 1_001_000 - record_costs);

    // Usage per model shows the same money.
    let rows = gw.wait_for_usage_calls(ok as i64 + 1).await;
    assert_eq!(rows[0].cost_micros, record_costs);

    // Tenant isolation: beta saw none of it.
    let beta = admin
        .billing
        .list_ledger(pb::ListLedgerRequest {
            tenant: "beta".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(beta.entries.is_empty());
    assert_eq!(beta.balance_micros, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_tenant_gets_403_until_unfrozen() {
    let gw = Gateway::start().await;
    let mut admin = gw.admin().await;
    let a = admin
        .billing
        .freeze_tenant(pb::FreezeTenantRequest {
            tenant: "acme".into(),
            reason: "unpaid invoice".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(a.frozen);
    gw.cp.wait_for_ack("dp-1", gw.cp.version().await).await;
    let resp = gw.post("/v1/chat/completions", &chat()).await;
    assert_eq!(resp.status(), 403);
    let err: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "tenant_frozen");
    let resp = gw
        .post(
            "/v1/messages",
            &json!({"model": "gpt-test", "max_tokens": 20,
                    "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(resp.status(), 403);
    let err: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["type"], "permission_error");
    admin
        .billing
        .unfreeze_tenant(pb::UnfreezeTenantRequest {
            tenant: "acme".into(),
        })
        .await
        .unwrap();
    gw.cp.wait_for_ack("dp-1", gw.cp.version().await).await;
    // Unpriced model: free, no balance needed.
    let resp = gw.post("/v1/chat/completions", &chat()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tollgate-cost-micros"], "0");
}

/// Three data planes, eight callers each, one tenant with 5000 µ$: the
/// balance never goes below zero (every journal entry's balance_after ≥ 0)
/// and the spend never exceeds it (docs/billing.md: without crashes the
/// overdraft bound is 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_data_planes_never_overdraw_a_small_balance() {
    const BALANCE: i64 = 5_000;
    let gw = Gateway::start().await;
    bill(&gw, BALANCE).await;
    let mut dps = Vec::new();
    for n in 2..=3 {
        let node = format!("dp-{n}");
        let dp = DataPlane::start(
            gw.cp.url(),
            &gw.cp.dp_token,
            &gw.dir.path().join(&node),
            &node,
            &[],
        )
        .await;
        gw.cp.wait_for_ack(&node, gw.cp.version().await).await;
        dps.push(dp);
    }
    let urls: Vec<String> = std::iter::once(gw.dp.url().to_string())
        .chain(dps.iter().map(|d| d.url().to_string()))
        .collect();
    let mut workers = Vec::new();
    for url in &urls {
        for _ in 0..8 {
            let (url, key) = (url.clone(), gw.key.clone());
            workers.push(tokio::spawn(async move {
                let client = http();
                let (mut ok, mut refused) = (0_i64, 0);
                for _ in 0..40 {
                    let resp = client
                        .post(format!("{url}/v1/chat/completions"))
                        .bearer_auth(&key)
                        .json(&chat())
                        .send()
                        .await
                        .unwrap();
                    match resp.status().as_u16() {
                        200 => ok += 1,
                        402 => {
                            refused += 1;
                            if refused >= 3 {
                                break;
                            }
                        }
                        other => panic!("unexpected status {other}"),
                    }
                    let _ = resp.bytes().await;
                }
                ok
            }));
        }
    }
    let mut served = 0;
    for w in workers {
        served += w.await.unwrap();
    }
    assert!(served > 0);
    let record_costs = wait_for_records(&gw, served as usize).await;
    assert_eq!(record_costs, CALL_COST * served);
    assert!(
        record_costs <= BALANCE,
        "spent {record_costs} of a {BALANCE} balance"
    );
    let l = ledger(&gw).await;
    assert_eq!(l.totals_by_kind["usage"], -record_costs);
    assert_eq!(l.balance_micros, BALANCE - record_costs);
    assert!(
        l.entries.iter().all(|e| e.balance_after_micros >= 0),
        "the balance went below zero"
    );
    // The leases together never held more than the balance.
    let a = account(&gw).await;
    assert!(a.leased_micros <= a.balance_micros, "{a:?}");
}

/// Accepts one webhook POST and hands its JSON body over.
async fn webhook_once() -> (String, tokio::sync::oneshot::Receiver<serde_json::Value>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0_u8; 4096];
        loop {
            let n = sock.read(&mut chunk).await.unwrap();
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if body.len() >= len {
                    sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .await
                        .unwrap();
                    let _ = tx.send(serde_json::from_str(body).unwrap());
                    return;
                }
            }
            assert!(n > 0, "webhook connection closed early");
        }
    });
    (url, rx)
}

/// A monthly budget's hard limit stops calls (402) although the balance
/// could pay; crossing its soft threshold raises one alert, listed in the
/// admin API and posted to the webhook.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_hard_limit_refuses_and_soft_threshold_alerts() {
    let gw = Gateway::start().await;
    bill(&gw, 1_000_000).await;
    let (hook, delivered) = webhook_once().await;
    let mut admin = gw.admin().await;
    let b = admin
        .billing
        .set_budget(pb::SetBudgetRequest {
            tenant: "acme".into(),
            period: "month".into(),
            amount_micros: 1_500,
            soft_micros: 400,
            utc_offset_minutes: 60,
            webhook_url: hook,
            key: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(b.spent_micros, 0);
    let mut ok = 0_i64;
    loop {
        let resp = gw.post("/v1/chat/completions", &chat()).await;
        match resp.status().as_u16() {
            200 => ok += 1,
            402 => break,
            s => panic!("status {s}"),
        }
        let _ = resp.bytes().await;
        assert!(ok < 20, "the budget never stopped calls");
    }
    assert!(ok >= 3, "{ok} calls before the budget stopped them");
    let spent = wait_for_records(&gw, ok as usize).await;
    assert!(spent <= 1_500, "spent {spent} of a 1500 budget");
    assert!(account(&gw).await.balance_micros > 900_000);
    let alerts = admin
        .billing
        .list_budget_alerts(pb::ListBudgetAlertsRequest {
            tenant: "acme".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .alerts;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(alerts[0].spent_micros >= 400);
    let posted = tokio::time::timeout(Duration::from_secs(20), delivered)
        .await
        .expect("webhook called")
        .unwrap();
    assert_eq!(posted["type"], "budget.soft_threshold_reached");
    assert_eq!(posted["tenant_id"], gw.tenant_id.as_str());
    assert_eq!(posted["threshold_micros"], 400);
    let listed = admin
        .billing
        .list_budgets(pb::ListBudgetsRequest {
            tenant: "acme".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .budgets;
    assert_eq!(listed[0].spent_micros, spent);
}

/// A key with a budget of its own stops at its budget with 402
/// `budget_exceeded` while the tenant's other key goes on spending; the
/// key's spend never exceeds its budget; a soft threshold alerts for the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_budget_stops_that_key_only() {
    let gw = Gateway::start().await;
    bill(&gw, 1_000_000).await;
    let mut admin = gw.admin().await;
    let capped = admin
        .keys
        .create_key(pb::CreateKeyRequest {
            tenant: "acme".into(),
            name: "intern".into(),
            expires_at_ms: 0,
            providers: Vec::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let b = admin
        .billing
        .set_budget(pb::SetBudgetRequest {
            tenant: "acme".into(),
            period: "day".into(),
            amount_micros: 1_000,
            soft_micros: 300,
            utc_offset_minutes: 0,
            webhook_url: String::new(),
            key: "intern".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(b.key_id, capped.key.as_ref().unwrap().id);
    let version = gw.cp.version().await;
    gw.cp.wait_for_ack("dp-1", version).await;

    let call = |key: String| {
        let url = format!("{}/v1/chat/completions", gw.dp.url());
        async move {
            http()
                .post(url)
                .bearer_auth(key)
                .json(&chat())
                .send()
                .await
                .unwrap()
        }
    };
    let mut ok = 0_usize;
    let refusal = loop {
        let resp = call(capped.secret.clone()).await;
        match resp.status().as_u16() {
            200 => ok += 1,
            402 => break resp.json::<serde_json::Value>().await.unwrap(),
            s => panic!("status {s}"),
        }
        assert!(ok < 20, "the key budget never stopped calls");
    };
    assert_eq!(refusal["error"]["code"], "budget_exceeded", "{refusal}");
    assert_eq!(refusal["error"]["type"], "insufficient_quota");
    // 1,000 µ$ at 158 per call with a worst case of 50 output tokens
    // reserved: a few calls, and never more than the budget.
    assert!(ok >= 3, "{ok} calls before the key budget stopped them");
    // The tenant's other key is not held back.
    for _ in 0..3 {
        let resp = gw.post("/v1/chat/completions", &chat()).await;
        assert_eq!(resp.status(), 200);
    }
    let spent = wait_for_records(&gw, ok + 3).await;
    let listed = admin
        .billing
        .list_budgets(pb::ListBudgetsRequest {
            tenant: "acme".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .budgets;
    let kb = listed.iter().find(|b| !b.key_id.is_empty()).unwrap();
    assert_eq!(kb.spent_micros, ok as i64 * CALL_COST);
    assert!(kb.spent_micros <= 1_000, "key spent {}", kb.spent_micros);
    assert_eq!(spent, (ok as i64 + 3) * CALL_COST);
    let alerts = admin
        .billing
        .list_budget_alerts(pb::ListBudgetAlertsRequest {
            tenant: "acme".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .alerts;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].key_id, kb.key_id);

    // Removing the key's budget lets it call again.
    admin
        .billing
        .delete_budget(pb::DeleteBudgetRequest {
            tenant: "acme".into(),
            period: "day".into(),
            key: "intern".into(),
        })
        .await
        .unwrap();
    let version = gw.cp.version().await;
    gw.cp.wait_for_ack("dp-1", version).await;
    let resp = call(capped.secret.clone()).await;
    assert_eq!(resp.status(), 200);
}
