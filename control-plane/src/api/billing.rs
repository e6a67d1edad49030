//! `BillingService`: prices, accounts, the journal, redemption codes and
//! freezing. Every call names its tenant and touches only that tenant's rows.

use std::collections::HashMap;

use crate::api::access::Need;
use tollgate_proto::admin::v1 as pb;
use tollgate_proto::admin::v1::billing_service_server::BillingService;
use tonic::{Request, Response, Status};

use super::status::store_status;
use super::ApiState;
use crate::store::billing::kind;
use crate::store::{Account, LedgerEntry, LedgerQuery, NewLedgerEntry, StoredPrice};

#[derive(Debug, Clone)]
pub struct BillingApi {
    state: ApiState,
}

impl BillingApi {
    pub fn new(state: ApiState) -> Self {
        Self { state }
    }
}

/// Largest amount of one journal entry or code: $1 billion.
const MAX_AMOUNT: i64 = 1_000_000_000 * tollgate_core::money::MICROS_PER_USD;
/// Largest price per million tokens: $1 million.
const MAX_PRICE: i64 = 1_000_000 * tollgate_core::money::MICROS_PER_USD;

fn account_to_proto(a: Account) -> pb::Account {
    pb::Account {
        spendable_micros: a.spendable_micros(),
        tenant_id: a.tenant_id,
        balance_micros: a.balance_micros,
        credit_limit_micros: a.credit_limit_micros,
        price_multiplier_bps: a.price_multiplier_bps,
        frozen: a.frozen_at_ms != 0,
        frozen_reason: a.frozen_reason,
        leased_micros: a.leased_micros,
    }
}

pub(crate) fn entry_to_proto(e: LedgerEntry) -> pb::LedgerEntry {
    pb::LedgerEntry {
        id: e.id,
        tenant_id: e.tenant_id,
        kind: e.kind,
        amount_micros: e.amount_micros,
        balance_after_micros: e.balance_after_micros,
        reference: e.reference,
        note: e.note,
        created_at_ms: e.created_at_ms,
    }
}

fn price_to_proto(p: StoredPrice) -> pb::ModelPrice {
    pb::ModelPrice {
        tenant_id: p.tenant_id,
        model: p.model_name,
        provider: p.provider_name,
        price: Some(pb::PriceValues {
            input_per_mtok: p.input_per_mtok,
            cache_read_per_mtok: p.cache_read_per_mtok,
            cache_write_per_mtok: p.cache_write_per_mtok,
            output_per_mtok: p.output_per_mtok,
            reasoning_per_mtok: p.reasoning_per_mtok,
            per_request_micros: p.per_request_micros,
            max_output_tokens: p.max_output_tokens,
        }),
        updated_at_ms: p.updated_at_ms,
    }
}

fn validate_price(v: &pb::PriceValues) -> Result<StoredPrice, Status> {
    let fields = [
        ("input_per_mtok", v.input_per_mtok),
        ("cache_read_per_mtok", v.cache_read_per_mtok),
        ("cache_write_per_mtok", v.cache_write_per_mtok),
        ("output_per_mtok", v.output_per_mtok),
        ("reasoning_per_mtok", v.reasoning_per_mtok.unwrap_or(0)),
        ("per_request_micros", v.per_request_micros),
    ];
    for (name, value) in fields {
        if !(0..=MAX_PRICE).contains(&value) {
            return Err(Status::invalid_argument(format!(
                "{name} must be between 0 and {MAX_PRICE} micro-dollars"
            )));
        }
    }
    if !(0..=10_000_000).contains(&v.max_output_tokens) {
        return Err(Status::invalid_argument(
            "max_output_tokens must be between 0 and 10000000",
        ));
    }
    Ok(StoredPrice {
        input_per_mtok: v.input_per_mtok,
        cache_read_per_mtok: v.cache_read_per_mtok,
        cache_write_per_mtok: v.cache_write_per_mtok,
        output_per_mtok: v.output_per_mtok,
        reasoning_per_mtok: v.reasoning_per_mtok,
        per_request_micros: v.per_request_micros,
        max_output_tokens: v.max_output_tokens,
        ..StoredPrice::default()
    })
}

#[tonic::async_trait]
impl BillingService for BillingApi {
    async fn set_price(
        &self,
        request: Request<pb::SetPriceRequest>,
    ) -> Result<Response<pb::ModelPrice>, Status> {
        self.state.require_operator(&request, Need::Write).await?;
        let tenant = self
            .state
            .tenant_for(&request, &request.get_ref().tenant, Need::Write)
            .await?;
        let req = request.into_inner();
        let values = req
            .price
            .as_ref()
            .ok_or_else(|| Status::invalid_argument("price is required"))?;
        let price = validate_price(values)?;
        let stored = self
            .state
            .store
            .set_price(&tenant.id, req.model.trim(), req.provider.trim(), &price)
            .await
            .map_err(store_status)?;
        Ok(Response::new(price_to_proto(stored)))
    }

    async fn list_prices(
        &self,
        request: Request<pb::ListPricesRequest>,
    ) -> Result<Response<pb::ListPricesResponse>, Status> {
        let tenant = self
            .state
            .tenant_for(&request, &request.get_ref().tenant, Need::Read)
            .await?;
        let prices = self
            .state
            .store
            .list_prices(&tenant.id)
            .await
            .map_err(store_status)?;
        Ok(Response::new(pb::ListPricesResponse {
            prices: prices.into_iter().map(price_to_proto).collect(),
        }))
    }

    async fn delete_price(
        &self,
        request: Request<pb::DeletePriceRequest>,
    ) -> Result<Response<pb::DeletePriceResponse>, Status> {
        self.state.require_operator(&request, Need::Write).await?;
        let tenant = self
            .state
            .tenant_for(&request, &request.get_ref().tenant, Need::Write)
            .await?;
        let req = request.into_inner();
        self.state
            .store
            .delete_price(&tenant.id, req.model.trim(), req.provider.trim())
            .await
            .map_err(store_status)?;
        Ok(Response::new(pb::DeletePriceResponse {}))
    }

    async fn set_account(
        &self,
        request: Request<pb::SetAccountRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        self.state.require_operator(&request, Need::Write).await?;
        let tenant = self
            .state
            .tenant_for(&request, &request.get_ref().tenant, Need::Write)
            .await?;
        let req = request.into_inner();
        if let Some(bps) = req.price_multiplier_bps {
            if bps > 1_000_000 {
                return Err(Status::invalid_argument(
                    "price_multiplier_bps must be at most 1000000 (100x)",
                ));
            }
        }
        if let Some(limit) = req.credit_limit_micros {
            if !(0..=MAX_AMOUNT).contains(&limit) {
                return Err(Status::invalid_argument(format!(
                    "credit_limit_micros must be between 0 and {MAX_AMOUNT}"
                )));
            }
        }
        let account = self
            .state
            .store
            .set_account(
                &tenant.id,
                req.price_multiplier_bps,
                req.credit_limit_micros,
            )
            .await
            .map_err(store_status)?;
        Ok(Response::new(account_to_proto(account)))
    }

    async fn get_account(
        &self,
        request: Request<pb::GetAccountRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        let tenant = self
            .state
            .tenant_for(&request, &request.get_ref().tenant, Need::Read)
            .await?;
        let account = self
            .state
            .store
            .get_account(&tenant.id)
            .await
            .map_err(store_status)?;
        Ok(Response::new(account_to_proto(account)))
    }

    async fn add_ledger_entry(
        &self,
        request: Request<pb::AddLedgerEntryRequest>,
    ) -> Result<Response<pb::LedgerEntry>, Status> {
        self.state.require_operator(&request, Need::Write).await?;
        let tenant = self
            .state
            .tenant_for(&request, &request.get_ref().tenant, Need::Write)
            .await?;
        let req = request.into_inner();
        let entry_kind = match req.kind.as_str() {
            "topup" | "" => kind::TOPUP,
            "credit" => kind::CREDIT,
            "refund" => kind::REFUND,
            "adjustment" => kind::ADJUSTMENT,
            other => {
                return Err(Status::invalid_argument(format!(
                "kind {other:?} cannot be added by hand: use topup, credit, refund or adjustment"
            )))
            }
        };
        let positive_only = entry_kind != kind::ADJUSTMENT;
        if (positive_only && req.amount_micros <= 0)
            || req.amount_micros == 0
            || req.amount_micros.abs() > MAX_AMOUNT
        {
            return Err(Status::invalid_argument(format!(
                "amount_micros must be {} and at most {MAX_AMOUNT} in size",
                if positive_only {
                    "positive"
                } else {
                    "non-zero"
                }
            )));
        }
        let key = req.idempotency_key.trim();
        if key.is_empty() || key.len() > 200 {
            return Err(Status::invalid_argument(
                "idempotency_key is required (at most 200 bytes): a resent request must not add twice",
            ));
        }
        // Keys are namespaced per tenant: one tenant can never collide with
        // (or learn about) another's entries.
        let scoped = format!("{}:{key}", tenant.id);
        let entry = self
            .state
            .store
            .add_ledger_entry(&NewLedgerEntry {
                tenant_id: &tenant.id,
                kind: entry_kind,
                amount_micros: req.amount_micros,
                idempotency_key: &scoped,
                reference: req.reference.trim(),
                note: req.note.trim(),
            })
            .await
            .map_err(store_status)?;
        Ok(Response::new(entry_to_proto(entry)))
    }

    async fn list_ledger(
        &self,
        request: Request<pb::ListLedgerRequest>,
    ) -> Result<Response<pb::ListLedgerResponse>, Status> {
        let tenant = self
            .state
            .tenant_for(&request, &request.get_ref().tenant, Need::Read)
            .await?;
        let req = request.into_inner();
        let q = LedgerQuery {
            since_ms: req.since_ms,
            until_ms: if req.until_ms == 0 {
                i64::MAX
            } else {
                req.until_ms
            },
            limit: if req.limit == 0 {
                100
            } else {
                i64::from(req.limit.min(10_000))
            },
            kind: req.kind,
        };
        let entries = self
            .state
            .store
            .list_ledger(&tenant.id, &q)
            .await
            .map_err(store_status)?;
        let account = self
            .state
            .store
            .get_account(&tenant.id)
            .await
            .map_err(store_status)?;
        let mut totals: HashMap<String, i64> = HashMap::new();
        for e in &entries {
            *totals.entry(e.kind.clone()).or_default() += e.amount_micros;
        }
        Ok(Response::new(pb::ListLedgerResponse {
            entries: entries.into_iter().map(entry_to_proto).collect(),
            balance_micros: account.balance_micros,
            totals_by_kind: totals,
        }))
    }

    async fn generate_codes(
        &self,
        request: Request<pb::GenerateCodesRequest>,
    ) -> Result<Response<pb::GenerateCodesResponse>, Status> {
        self.state.require_operator(&request, Need::Write).await?;
        let req = request.into_inner();
        if req.count == 0 || req.count > 10_000 {
            return Err(Status::invalid_argument(
                "count must be between 1 and 10000",
            ));
        }
        if req.value_micros <= 0 || req.value_micros > MAX_AMOUNT {
            return Err(Status::invalid_argument(format!(
                "value_micros must be positive and at most {MAX_AMOUNT}"
            )));
        }
        let (batch_id, codes) = self
            .state
            .store
            .generate_codes(
                req.count,
                req.value_micros,
                req.expires_at_ms,
                req.note.trim(),
            )
            .await
            .map_err(store_status)?;
        Ok(Response::new(pb::GenerateCodesResponse { batch_id, codes }))
    }

    async fn redeem_code(
        &self,
        request: Request<pb::RedeemCodeRequest>,
    ) -> Result<Response<pb::LedgerEntry>, Status> {
        let tenant = self
            .state
            .tenant_for(&request, &request.get_ref().tenant, Need::Write)
            .await?;
        let req = request.into_inner();
        let code = req.code.trim();
        if code.is_empty() {
            return Err(Status::invalid_argument("code is required"));
        }
        let entry = self
            .state
            .store
            .redeem_code(&tenant.id, code)
            .await
            .map_err(store_status)?;
        Ok(Response::new(entry_to_proto(entry)))
    }

    async fn freeze_tenant(
        &self,
        request: Request<pb::FreezeTenantRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        self.state.require_operator(&request, Need::Write).await?;
        let tenant = self
            .state
            .tenant_for(&request, &request.get_ref().tenant, Need::Write)
            .await?;
        let req = request.into_inner();
        let reason = if req.reason.trim().is_empty() {
            "frozen by an operator"
        } else {
            req.reason.trim()
        };
        let account = self
            .state
            .store
            .set_frozen(&tenant.id, Some(reason))
            .await
            .map_err(store_status)?;
        Ok(Response::new(account_to_proto(account)))
    }

    async fn unfreeze_tenant(
        &self,
        request: Request<pb::UnfreezeTenantRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        self.state.require_operator(&request, Need::Write).await?;
        let tenant = self
            .state
            .tenant_for(&request, &request.get_ref().tenant, Need::Write)
            .await?;
        let account = self
            .state
            .store
            .set_frozen(&tenant.id, None)
            .await
            .map_err(store_status)?;
        Ok(Response::new(account_to_proto(account)))
    }

    async fn set_budget(
        &self,
        request: Request<pb::SetBudgetRequest>,
    ) -> Result<Response<pb::Budget>, Status> {
        let tenant = self
            .state
            .tenant_for(&request, &request.get_ref().tenant, Need::Write)
            .await?;
        let req = request.into_inner();
        if req.amount_micros <= 0 || req.amount_micros > MAX_AMOUNT {
            return Err(Status::invalid_argument(format!(
                "amount_micros must be positive and at most {MAX_AMOUNT}"
            )));
        }
        if req.soft_micros < 0 || req.soft_micros > req.amount_micros {
            return Err(Status::invalid_argument(
                "soft_micros must be between 0 and amount_micros",
            ));
        }
        if !(-14 * 60..=14 * 60).contains(&req.utc_offset_minutes) {
            return Err(Status::invalid_argument(
                "utc_offset_minutes must be between -840 and 840",
            ));
        }
        let url = req.webhook_url.trim();
        if !(url.is_empty() || url.starts_with("https://") || url.starts_with("http://")) {
            return Err(Status::invalid_argument(
                "webhook_url must be an http(s) URL",
            ));
        }
        let key_id = self.key_id(&tenant.id, &req.key).await?;
        let b = self
            .state
            .store
            .set_budget(&crate::store::Budget {
                id: String::new(),
                tenant_id: tenant.id.clone(),
                key_id,
                period: req.period.trim().to_owned(),
                amount_micros: req.amount_micros,
                soft_micros: req.soft_micros,
                utc_offset_min: req.utc_offset_minutes,
                webhook_url: url.to_owned(),
            })
            .await
            .map_err(store_status)?;
        let spent = self
            .state
            .store
            .list_budgets(&tenant.id)
            .await
            .map_err(store_status)?
            .into_iter()
            .find(|(x, _)| x.id == b.id)
            .map_or(0, |(_, s)| s);
        Ok(Response::new(budget_to_proto(b, spent)))
    }

    async fn list_budgets(
        &self,
        request: Request<pb::ListBudgetsRequest>,
    ) -> Result<Response<pb::ListBudgetsResponse>, Status> {
        let tenant = self
            .state
            .tenant_for(&request, &request.get_ref().tenant, Need::Read)
            .await?;
        let budgets = self
            .state
            .store
            .list_budgets(&tenant.id)
            .await
            .map_err(store_status)?;
        Ok(Response::new(pb::ListBudgetsResponse {
            budgets: budgets
                .into_iter()
                .map(|(b, s)| budget_to_proto(b, s))
                .collect(),
        }))
    }

    async fn delete_budget(
        &self,
        request: Request<pb::DeleteBudgetRequest>,
    ) -> Result<Response<pb::DeleteBudgetResponse>, Status> {
        let tenant = self
            .state
            .tenant_for(&request, &request.get_ref().tenant, Need::Write)
            .await?;
        let req = request.into_inner();
        let key_id = self.key_id(&tenant.id, &req.key).await?;
        self.state
            .store
            .delete_budget(&tenant.id, &key_id, req.period.trim())
            .await
            .map_err(store_status)?;
        Ok(Response::new(pb::DeleteBudgetResponse {}))
    }

    async fn list_budget_alerts(
        &self,
        request: Request<pb::ListBudgetAlertsRequest>,
    ) -> Result<Response<pb::ListBudgetAlertsResponse>, Status> {
        let tenant = self
            .state
            .tenant_for(&request, &request.get_ref().tenant, Need::Read)
            .await?;
        let alerts = self
            .state
            .store
            .list_budget_alerts(&tenant.id)
            .await
            .map_err(store_status)?;
        Ok(Response::new(pb::ListBudgetAlertsResponse {
            alerts: alerts
                .into_iter()
                .map(|a| pb::BudgetAlert {
                    id: a.id,
                    tenant_id: a.tenant_id,
                    key_id: a.key_id,
                    period: a.period,
                    period_start_ms: a.period_start_ms,
                    threshold_micros: a.threshold_micros,
                    spent_micros: a.spent_micros,
                    created_at_ms: a.created_at_ms,
                    delivered_at_ms: a.delivered_at_ms,
                })
                .collect(),
        }))
    }
}

impl BillingApi {
    /// The id of the tenant's key named by `reference` (id or name); ''
    /// for an empty reference (the tenant's own budget).
    async fn key_id(&self, tenant_id: &str, reference: &str) -> Result<String, Status> {
        let reference = reference.trim();
        if reference.is_empty() {
            return Ok(String::new());
        }
        self.state
            .store
            .list_keys(tenant_id)
            .await
            .map_err(store_status)?
            .into_iter()
            .find(|k| k.revoked_at_ms == 0 && (k.id == reference || k.name == reference))
            .map(|k| k.id)
            .ok_or_else(|| Status::not_found(format!("key '{reference}' not found")))
    }
}

fn budget_to_proto(b: crate::store::Budget, spent: i64) -> pb::Budget {
    pb::Budget {
        id: b.id,
        tenant_id: b.tenant_id,
        key_id: b.key_id,
        period: b.period,
        amount_micros: b.amount_micros,
        soft_micros: b.soft_micros,
        utc_offset_minutes: b.utc_offset_min,
        webhook_url: b.webhook_url,
        spent_micros: spent,
    }
}
