//! Billing verbs: `price`, `account`, `balance`, `topup`, `ledger`
//! (`statement`), `codes`, and `tenant freeze|unfreeze`. Amounts are typed
//! in dollars (`2.50`) and parsed exactly into micro-dollars.

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;

use tollgate_core::money::{format_usd, parse_usd};
use tollgate_proto::admin::v1 as pb;

use crate::client::{status_error, Admin};
use crate::output::{datetime, table};

#[derive(Subcommand, Debug)]
pub enum BillingCmd {
    /// Model prices (USD per million tokens of each bucket).
    #[command(subcommand)]
    Price(PriceCmd),
    /// A tenant's account: price multiplier (discount/markup), credit limit.
    #[command(subcommand)]
    Account(AccountCmd),
    /// A tenant's balance, leased and spendable amounts.
    Balance(TenantOnly),
    /// Add money to a tenant's balance (also credit, refund, adjustment).
    Topup(Topup),
    /// A tenant's statement: journal entries, newest first.
    #[command(alias = "statement")]
    Ledger(LedgerArgs),
    /// Redemption codes.
    #[command(subcommand)]
    Codes(CodesCmd),
    /// Spending budgets per day/week/month (hard limit, soft alert).
    #[command(subcommand)]
    Budget(BudgetCmd),
}

#[derive(Subcommand, Debug)]
pub enum BudgetCmd {
    /// Set the tenant's budget for a period (replaces an existing one), or
    /// with --key a budget of one caller key.
    Set {
        #[arg(long)]
        tenant: String,
        /// A caller key (id or name): the budget applies to that key alone.
        #[arg(long, default_value = "")]
        key: String,
        /// day, week (from Monday) or month.
        #[arg(long, default_value = "month")]
        period: String,
        /// Hard limit in USD: calls beyond it get 402.
        #[arg(long)]
        amount: String,
        /// Alert threshold in USD.
        #[arg(long)]
        soft: Option<String>,
        /// Tenant time zone as minutes east of UTC (e.g. 60, -300).
        #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
        utc_offset_minutes: i32,
        /// POST alerts to this URL.
        #[arg(long, default_value = "")]
        webhook_url: String,
    },
    /// List the tenant's budgets and what each period spent.
    List(TenantOnly),
    /// Remove a budget.
    Delete {
        #[arg(long)]
        tenant: String,
        /// The key whose budget to remove (default: the tenant's).
        #[arg(long, default_value = "")]
        key: String,
        #[arg(long)]
        period: String,
    },
    /// Soft-threshold alerts.
    Alerts(TenantOnly),
}

#[derive(Subcommand, Debug)]
pub enum TenantBillingCmd {
    /// Freeze a tenant: every call is refused with 403 tenant_frozen.
    Freeze {
        #[arg(long)]
        tenant: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Unfreeze a tenant.
    Unfreeze {
        #[arg(long)]
        tenant: String,
    },
}

#[derive(Args, Debug)]
pub struct TenantOnly {
    #[arg(long)]
    pub tenant: String,
}

#[derive(Subcommand, Debug)]
pub enum PriceCmd {
    /// Set the price of a model (all its targets, or one --provider).
    Set(PriceSet),
    /// List a tenant's prices.
    List(TenantOnly),
    /// Remove a price (the model becomes free).
    Delete {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        model: String,
        #[arg(long, default_value = "")]
        provider: String,
    },
}

#[derive(Args, Debug)]
pub struct PriceSet {
    #[arg(long)]
    pub tenant: String,
    /// Model name or id.
    #[arg(long)]
    pub model: String,
    /// Price only this provider target of the route (name or id).
    #[arg(long, default_value = "")]
    pub provider: String,
    /// USD per million uncached input tokens, e.g. 2.50.
    #[arg(long, default_value = "0")]
    pub input: String,
    /// USD per million output tokens.
    #[arg(long, default_value = "0")]
    pub output: String,
    /// USD per million input tokens read from a cache.
    #[arg(long, default_value = "0")]
    pub cache_read: String,
    /// USD per million input tokens written to a cache.
    #[arg(long, default_value = "0")]
    pub cache_write: String,
    /// USD per million reasoning tokens, when priced apart from output.
    #[arg(long)]
    pub reasoning: Option<String>,
    /// USD per call.
    #[arg(long, default_value = "0")]
    pub per_request: String,
    /// Output assumed for calls without max_tokens (worst-case reservation).
    #[arg(long, default_value_t = 0)]
    pub max_output_tokens: i64,
}

#[derive(Subcommand, Debug)]
pub enum AccountCmd {
    /// Show the account.
    Show(TenantOnly),
    /// Set the price multiplier and/or the credit limit.
    Set {
        #[arg(long)]
        tenant: String,
        /// Basis points: 10000 = list price, 8000 = 20 % discount, 12500 = 25 % markup.
        #[arg(long)]
        multiplier_bps: Option<u32>,
        /// USD the balance may go below zero (postpaid); 0 = prepaid.
        #[arg(long)]
        credit_limit: Option<String>,
    },
}

#[derive(Args, Debug)]
pub struct Topup {
    #[arg(long)]
    pub tenant: String,
    /// USD, e.g. 10 or 2.50 (negative only for --kind adjustment).
    #[arg(long, allow_hyphen_values = true)]
    pub amount: String,
    /// topup, credit, refund or adjustment.
    #[arg(long, default_value = "topup")]
    pub kind: String,
    /// Re-running with the same key adds nothing (default: a new key,
    /// printed so a retry can reuse it).
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// Your reference, e.g. an invoice number.
    #[arg(long, default_value = "")]
    pub reference: String,
    #[arg(long, default_value = "")]
    pub note: String,
}

#[derive(Args, Debug)]
pub struct LedgerArgs {
    #[arg(long)]
    pub tenant: String,
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Only this kind (topup, credit, adjustment, refund, redemption, usage).
    #[arg(long, default_value = "")]
    pub kind: String,
}

#[derive(Subcommand, Debug)]
pub enum CodesCmd {
    /// Generate a batch of codes worth --value each (printed once).
    Generate {
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// USD per code.
        #[arg(long)]
        value: String,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Redeem a code for a tenant.
    Redeem {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        code: String,
    },
}

fn usd(field: &str, text: &str) -> anyhow::Result<i64> {
    parse_usd(text).with_context(|| {
        format!("--{field}: {text:?} is not an amount in USD (e.g. 12, 2.50, 0.000001)")
    })
}

fn print_account(a: &pb::Account, as_json: bool) {
    if as_json {
        println!(
            "{}",
            json!({"tenant_id": a.tenant_id, "balance_micros": a.balance_micros,
                   "credit_limit_micros": a.credit_limit_micros,
                   "price_multiplier_bps": a.price_multiplier_bps, "frozen": a.frozen,
                   "frozen_reason": a.frozen_reason, "leased_micros": a.leased_micros,
                   "spendable_micros": a.spendable_micros})
        );
        return;
    }
    println!("tenant:       {}", a.tenant_id);
    println!("balance:      {}", format_usd(a.balance_micros));
    println!("credit limit: {}", format_usd(a.credit_limit_micros));
    println!("leased:       {}", format_usd(a.leased_micros));
    println!("spendable:    {}", format_usd(a.spendable_micros));
    println!(
        "multiplier:   {}.{:02} %",
        a.price_multiplier_bps / 100,
        a.price_multiplier_bps % 100
    );
    if a.frozen {
        println!("FROZEN:       {}", a.frozen_reason);
    }
}

fn print_entry(e: &pb::LedgerEntry, as_json: bool) {
    if as_json {
        println!(
            "{}",
            json!({"id": e.id, "kind": e.kind, "amount_micros": e.amount_micros,
                   "balance_after_micros": e.balance_after_micros, "reference": e.reference,
                   "created_at_ms": e.created_at_ms})
        );
    } else {
        println!(
            "{} {} (balance {})",
            e.kind,
            format_usd(e.amount_micros),
            format_usd(e.balance_after_micros)
        );
    }
}

pub async fn tenant(admin: &mut Admin, cmd: TenantBillingCmd, as_json: bool) -> anyhow::Result<()> {
    let account = match cmd {
        TenantBillingCmd::Freeze { tenant, reason } => admin
            .billing
            .freeze_tenant(pb::FreezeTenantRequest { tenant, reason })
            .await
            .map_err(status_error)?,
        TenantBillingCmd::Unfreeze { tenant } => admin
            .billing
            .unfreeze_tenant(pb::UnfreezeTenantRequest { tenant })
            .await
            .map_err(status_error)?,
    }
    .into_inner();
    print_account(&account, as_json);
    Ok(())
}

pub async fn run(admin: &mut Admin, cmd: BillingCmd, as_json: bool) -> anyhow::Result<()> {
    match cmd {
        BillingCmd::Price(PriceCmd::Set(p)) => {
            let price = pb::PriceValues {
                input_per_mtok: usd("input", &p.input)?,
                cache_read_per_mtok: usd("cache-read", &p.cache_read)?,
                cache_write_per_mtok: usd("cache-write", &p.cache_write)?,
                output_per_mtok: usd("output", &p.output)?,
                reasoning_per_mtok: p
                    .reasoning
                    .as_deref()
                    .map(|r| usd("reasoning", r))
                    .transpose()?,
                per_request_micros: usd("per-request", &p.per_request)?,
                max_output_tokens: p.max_output_tokens,
            };
            let set = admin
                .billing
                .set_price(pb::SetPriceRequest {
                    tenant: p.tenant,
                    model: p.model,
                    provider: p.provider,
                    price: Some(price),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            print_prices(&[set], as_json);
        }
        BillingCmd::Price(PriceCmd::List(t)) => {
            let prices = admin
                .billing
                .list_prices(pb::ListPricesRequest { tenant: t.tenant })
                .await
                .map_err(status_error)?
                .into_inner()
                .prices;
            print_prices(&prices, as_json);
        }
        BillingCmd::Price(PriceCmd::Delete {
            tenant,
            model,
            provider,
        }) => {
            admin
                .billing
                .delete_price(pb::DeletePriceRequest {
                    tenant,
                    model: model.clone(),
                    provider,
                })
                .await
                .map_err(status_error)?;
            println!("Removed the price of {model}: its calls are free now");
        }
        BillingCmd::Account(AccountCmd::Show(t)) | BillingCmd::Balance(t) => {
            let a = admin
                .billing
                .get_account(pb::GetAccountRequest { tenant: t.tenant })
                .await
                .map_err(status_error)?
                .into_inner();
            print_account(&a, as_json);
        }
        BillingCmd::Account(AccountCmd::Set {
            tenant,
            multiplier_bps,
            credit_limit,
        }) => {
            let credit_limit_micros = credit_limit
                .as_deref()
                .map(|c| usd("credit-limit", c))
                .transpose()?;
            let a = admin
                .billing
                .set_account(pb::SetAccountRequest {
                    tenant,
                    price_multiplier_bps: multiplier_bps,
                    credit_limit_micros,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            print_account(&a, as_json);
        }
        BillingCmd::Topup(t) => {
            let key = t
                .idempotency_key
                .unwrap_or_else(|| tollgate_core::ids::new_id("topup"));
            let e = admin
                .billing
                .add_ledger_entry(pb::AddLedgerEntryRequest {
                    tenant: t.tenant,
                    kind: t.kind,
                    amount_micros: usd("amount", &t.amount)?,
                    idempotency_key: key.clone(),
                    reference: t.reference,
                    note: t.note,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            print_entry(&e, as_json);
            if !as_json {
                println!(
                    "idempotency key: {key} (re-run with --idempotency-key {key} to retry safely)"
                );
            }
        }
        BillingCmd::Ledger(l) => {
            let r = admin
                .billing
                .list_ledger(pb::ListLedgerRequest {
                    tenant: l.tenant,
                    limit: l.limit,
                    kind: l.kind,
                    ..Default::default()
                })
                .await
                .map_err(status_error)?
                .into_inner();
            if as_json {
                let entries: Vec<_> = r
                    .entries
                    .iter()
                    .map(|e| {
                        json!({"id": e.id, "kind": e.kind, "amount_micros": e.amount_micros,
                        "balance_after_micros": e.balance_after_micros, "reference": e.reference,
                        "note": e.note, "created_at_ms": e.created_at_ms})
                    })
                    .collect();
                println!(
                    "{}",
                    json!({"balance_micros": r.balance_micros, "entries": entries,
                           "totals_by_kind": r.totals_by_kind})
                );
            } else {
                let rows: Vec<Vec<String>> = r
                    .entries
                    .iter()
                    .map(|e| {
                        vec![
                            datetime(e.created_at_ms),
                            e.kind.clone(),
                            format_usd(e.amount_micros),
                            format_usd(e.balance_after_micros),
                            e.reference.clone(),
                            e.note.clone(),
                        ]
                    })
                    .collect();
                table(
                    &[
                        "TIME (UTC)",
                        "KIND",
                        "AMOUNT",
                        "BALANCE",
                        "REFERENCE",
                        "NOTE",
                    ],
                    &rows,
                );
                println!("balance now: {}", format_usd(r.balance_micros));
            }
        }
        BillingCmd::Codes(CodesCmd::Generate { count, value, note }) => {
            let r = admin
                .billing
                .generate_codes(pb::GenerateCodesRequest {
                    count,
                    value_micros: usd("value", &value)?,
                    expires_at_ms: 0,
                    note,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            if as_json {
                println!("{}", json!({"batch_id": r.batch_id, "codes": r.codes}));
            } else {
                println!("batch {} (codes are shown only now):", r.batch_id);
                for c in &r.codes {
                    println!("{c}");
                }
            }
        }
        BillingCmd::Budget(cmd) => budget(admin, cmd, as_json).await?,
        BillingCmd::Codes(CodesCmd::Redeem { tenant, code }) => {
            let e = admin
                .billing
                .redeem_code(pb::RedeemCodeRequest { tenant, code })
                .await
                .map_err(status_error)?
                .into_inner();
            print_entry(&e, as_json);
        }
    }
    Ok(())
}

fn print_prices(prices: &[pb::ModelPrice], as_json: bool) {
    let usd = |v: i64| format_usd(v);
    if as_json {
        let v: Vec<_> = prices
            .iter()
            .map(|p| {
                let v = p.price.unwrap_or_default();
                json!({"model": p.model, "provider": p.provider,
                    "input_per_mtok": v.input_per_mtok, "cache_read_per_mtok": v.cache_read_per_mtok,
                    "cache_write_per_mtok": v.cache_write_per_mtok, "output_per_mtok": v.output_per_mtok,
                    "reasoning_per_mtok": v.reasoning_per_mtok, "per_request_micros": v.per_request_micros,
                    "max_output_tokens": v.max_output_tokens})
            })
            .collect();
        println!("{}", serde_json::Value::Array(v));
        return;
    }
    let rows: Vec<Vec<String>> = prices
        .iter()
        .map(|p| {
            let v = p.price.unwrap_or_default();
            vec![
                p.model.clone(),
                if p.provider.is_empty() {
                    "*".into()
                } else {
                    p.provider.clone()
                },
                usd(v.input_per_mtok),
                usd(v.cache_read_per_mtok),
                usd(v.cache_write_per_mtok),
                usd(v.output_per_mtok),
                v.reasoning_per_mtok.map_or("=output".into(), usd),
                usd(v.per_request_micros),
            ]
        })
        .collect();
    table(
        &[
            "MODEL",
            "PROVIDER",
            "INPUT/M",
            "CACHE READ/M",
            "CACHE WRITE/M",
            "OUTPUT/M",
            "REASONING/M",
            "PER CALL",
        ],
        &rows,
    );
}

/// `tollgate dev`: the demo price of a mock model (USD 0.50 in, 1.50 out
/// per million tokens), so the quickstart shows costs.
pub async fn seed_demo_price(admin: &mut Admin, tenant: &str, model: &str) -> anyhow::Result<()> {
    admin
        .billing
        .set_price(pb::SetPriceRequest {
            tenant: tenant.into(),
            model: model.into(),
            provider: String::new(),
            price: Some(pb::PriceValues {
                input_per_mtok: 500_000,
                output_per_mtok: 1_500_000,
                ..Default::default()
            }),
        })
        .await
        .map_err(status_error)?;
    Ok(())
}

/// `tollgate dev`: a starting balance of USD 10, once (idempotent key).
pub async fn seed_demo_balance(admin: &mut Admin, tenant: &str) -> anyhow::Result<()> {
    admin
        .billing
        .add_ledger_entry(pb::AddLedgerEntryRequest {
            tenant: tenant.into(),
            kind: "credit".into(),
            amount_micros: 10 * tollgate_core::money::MICROS_PER_USD,
            idempotency_key: "tollgate-dev-starting-balance".into(),
            reference: "tollgate dev".into(),
            note: "demo starting balance".into(),
        })
        .await
        .map_err(status_error)?;
    Ok(())
}

async fn budget(admin: &mut Admin, cmd: BudgetCmd, as_json: bool) -> anyhow::Result<()> {
    let budgets = match cmd {
        BudgetCmd::Set {
            tenant,
            key,
            period,
            amount,
            soft,
            utc_offset_minutes,
            webhook_url,
        } => {
            let b = admin
                .billing
                .set_budget(pb::SetBudgetRequest {
                    tenant,
                    period,
                    amount_micros: usd("amount", &amount)?,
                    soft_micros: soft
                        .as_deref()
                        .map(|s| usd("soft", s))
                        .transpose()?
                        .unwrap_or(0),
                    utc_offset_minutes,
                    webhook_url,
                    key,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            vec![b]
        }
        BudgetCmd::List(t) => {
            admin
                .billing
                .list_budgets(pb::ListBudgetsRequest { tenant: t.tenant })
                .await
                .map_err(status_error)?
                .into_inner()
                .budgets
        }
        BudgetCmd::Delete {
            tenant,
            key,
            period,
        } => {
            admin
                .billing
                .delete_budget(pb::DeleteBudgetRequest {
                    tenant,
                    period: period.clone(),
                    key: key.clone(),
                })
                .await
                .map_err(status_error)?;
            if key.is_empty() {
                println!("Removed the {period} budget");
            } else {
                println!("Removed the {period} budget of key {key}");
            }
            return Ok(());
        }
        BudgetCmd::Alerts(t) => {
            let alerts = admin
                .billing
                .list_budget_alerts(pb::ListBudgetAlertsRequest { tenant: t.tenant })
                .await
                .map_err(status_error)?
                .into_inner()
                .alerts;
            if as_json {
                let v: Vec<_> = alerts
                    .iter()
                    .map(|a| json!({"id": a.id, "key_id": a.key_id, "period": a.period,
                        "period_start_ms": a.period_start_ms, "threshold_micros": a.threshold_micros,
                        "spent_micros": a.spent_micros, "created_at_ms": a.created_at_ms,
                        "delivered_at_ms": a.delivered_at_ms}))
                    .collect();
                println!("{}", serde_json::Value::Array(v));
            } else {
                let rows: Vec<Vec<String>> = alerts
                    .iter()
                    .map(|a| {
                        vec![
                            datetime(a.created_at_ms),
                            scope(&a.key_id),
                            a.period.clone(),
                            format_usd(a.threshold_micros),
                            format_usd(a.spent_micros),
                            datetime(a.delivered_at_ms),
                        ]
                    })
                    .collect();
                table(
                    &[
                        "TIME (UTC)",
                        "BUDGET OF",
                        "PERIOD",
                        "THRESHOLD",
                        "SPENT",
                        "DELIVERED",
                    ],
                    &rows,
                );
            }
            return Ok(());
        }
    };
    if as_json {
        let v: Vec<_> = budgets
            .iter()
            .map(|b| {
                json!({"key_id": b.key_id, "period": b.period, "amount_micros": b.amount_micros,
                "soft_micros": b.soft_micros, "utc_offset_minutes": b.utc_offset_minutes,
                "webhook_url": b.webhook_url, "spent_micros": b.spent_micros})
            })
            .collect();
        println!("{}", serde_json::Value::Array(v));
    } else {
        let rows: Vec<Vec<String>> = budgets
            .iter()
            .map(|b| {
                vec![
                    scope(&b.key_id),
                    b.period.clone(),
                    format_usd(b.amount_micros),
                    format_usd(b.soft_micros),
                    format_usd(b.spent_micros),
                    format!("{:+}", b.utc_offset_minutes),
                    b.webhook_url.clone(),
                ]
            })
            .collect();
        table(
            &[
                "BUDGET OF",
                "PERIOD",
                "LIMIT",
                "SOFT",
                "SPENT",
                "UTC OFFSET (MIN)",
                "WEBHOOK",
            ],
            &rows,
        );
    }
    Ok(())
}

/// Whose budget: the tenant's, or a key's.
fn scope(key_id: &str) -> String {
    if key_id.is_empty() {
        "tenant".into()
    } else {
        format!("key {key_id}")
    }
}
