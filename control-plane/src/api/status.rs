//! The one mapping from internal errors to gRPC statuses. Database and
//! crypto details are logged here and replaced by a generic message, so
//! nothing internal (or secret) reaches a caller.

use tonic::Status;

use crate::crypto::CryptoError;
use crate::store::StoreError;

pub fn store_status(e: StoreError) -> Status {
    match e {
        StoreError::NotFound(what) => Status::not_found(format!("{what} not found")),
        StoreError::AlreadyExists(what) => Status::already_exists(format!("{what} already exists")),
        StoreError::Invalid(msg) => Status::invalid_argument(msg),
        StoreError::InUse(msg) => Status::failed_precondition(msg),
        e @ (StoreError::Db(_) | StoreError::Migrate(_)) => {
            tracing::error!(error = %e, "store error");
            Status::internal("internal database error; see the control plane log")
        }
    }
}

pub fn crypto_status(e: CryptoError) -> Status {
    tracing::error!(error = %e, "encryption error");
    Status::internal("internal encryption error; see the control plane log")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn maps_each_variant() {
        assert_eq!(
            store_status(StoreError::NotFound("tenant 'x'".into())).code(),
            Code::NotFound
        );
        let s = store_status(StoreError::AlreadyExists("model 'm'".into()));
        assert_eq!(
            (s.code(), s.message()),
            (Code::AlreadyExists, "model 'm' already exists")
        );
        assert_eq!(
            store_status(StoreError::Invalid("bad".into())).code(),
            Code::InvalidArgument
        );
        assert_eq!(
            store_status(StoreError::InUse("used".into())).code(),
            Code::FailedPrecondition
        );
        let s = store_status(StoreError::Db(sqlx::Error::PoolTimedOut));
        assert_eq!(s.code(), Code::Internal);
        assert!(!s.message().contains("pool"));
    }
}
