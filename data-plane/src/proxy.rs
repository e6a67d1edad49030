//! The Pingora service. Each phase calls into the pipeline; the data plane
//! drives the upstream call itself from `request_filter` (see
//! `docs/adr/0002-dp-drives-upstream.md`), so `upstream_peer` is never
//! reached.

use std::sync::Arc;

use async_trait::async_trait;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorType, Result};
use pingora_proxy::{ProxyHttp, Session};

use crate::pipeline::{CallContext, Gateway};

/// `ProxyHttp` over the [`Gateway`] pipeline.
pub struct TollgateProxy {
    pub gateway: Arc<Gateway>,
}

#[async_trait]
impl ProxyHttp for TollgateProxy {
    type CTX = CallContext;

    fn new_ctx(&self) -> CallContext {
        CallContext::default()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut CallContext) -> Result<bool> {
        self.gateway.handle(session, ctx).await?;
        Ok(true)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut CallContext,
    ) -> Result<Box<HttpPeer>> {
        Err(Error::explain(
            ErrorType::InternalError,
            "the data plane answers every request in request_filter",
        ))
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut CallContext) {
        self.gateway.finish(session, ctx, e);
    }
}
