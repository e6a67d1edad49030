//! Body intake of every JSON route: the body read within the size limit and
//! the body read timeout, and its JSON nesting depth checked before the
//! parser sees it (limits: `http/limits.rs`).

use bytes::Bytes;
use pingora_proxy::Session;

use super::{Failure, Gateway};
use crate::http::errors::GatewayError;
use crate::http::{self, BodyError};

impl Gateway {
    /// The request body, bounded in size and in time, of sane JSON depth.
    pub(super) async fn read_request_body(&self, session: &mut Session) -> Result<Bytes, Failure> {
        let limit = self.limits.max_body_bytes;
        let timeout = self.limits.request.body_read_timeout;
        let body = match tokio::time::timeout(timeout, http::read_body(session, limit)).await {
            Ok(Ok(body)) => body,
            Ok(Err(BodyError::TooLarge)) => {
                return Err(Failure::Reply(GatewayError::BodyTooLarge { limit }))
            }
            Ok(Err(BodyError::Downstream(e))) => return Err(Failure::Downstream(e)),
            Err(_) => {
                // The rest of the body may still arrive: do not reuse the
                // connection after the 408.
                session.set_keepalive(None);
                return Err(Failure::Reply(GatewayError::RequestTimeout("body")));
            }
        };
        self.limits.request.check_json_depth(&body)?;
        Ok(body)
    }
}
