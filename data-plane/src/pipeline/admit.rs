//! Billing admission stage: a call of a billed tenant to a priced model
//! goes upstream only once its worst-case cost is reserved from the
//! tenant's lease, and from the key's budget lease when the key has
//! budgets of its own (docs/billing.md).

use super::{CallContext, Gateway};
use crate::billing::RouteBilling;
use crate::config::TenantRuntime;
use crate::http::errors::GatewayError;

impl Gateway {
    /// Reserves the highest worst-case cost among `targets` (a failover may
    /// land on any of them). Free calls (unpriced, or no billing) pass.
    pub(super) async fn admit(
        &self,
        ctx: &mut CallContext,
        tenant: &TenantRuntime,
        targets: impl Iterator<Item = Option<RouteBilling>>,
        body_bytes: usize,
        max_output: Option<i64>,
    ) -> Result<(), GatewayError> {
        let (Some(book), Some(_)) = (&self.billing, tenant.billing) else {
            return Ok(());
        };
        let worst = targets
            .flatten()
            .map(|b| b.worst_case(body_bytes, max_output))
            .max()
            .unwrap_or(0);
        if worst <= 0 {
            return Ok(());
        }
        let Ok(r) = book.reserve(&tenant.id, worst).await else {
            return Err(GatewayError::InsufficientBalance {
                needed_micros: worst,
            });
        };
        // A key with budgets of its own also reserves from its key lease.
        if let Some(key) = ctx.key.as_ref().filter(|k| k.budgeted) {
            match book.reserve_key(&tenant.id, &key.id, worst).await {
                Ok(k) => ctx.key_reservation = Some(k),
                Err(_) => {
                    book.settle(r, 0);
                    return Err(GatewayError::KeyBudgetExceeded {
                        needed_micros: worst,
                    });
                }
            }
        }
        ctx.reservation = Some(r);
        Ok(())
    }
}
