//! Per-request cache control: the caller's `x-tollgate-cache` and
//! `Cache-Control` request headers, and the `x-tollgate-cache` response
//! status.

use http::HeaderMap;

/// Header naming the directive (request) and the outcome (response).
pub const CACHE_HEADER: &str = "x-tollgate-cache";
/// [`CACHE_HEADER`] as a header name, for response heads.
pub const CACHE_HEADER_NAME: http::HeaderName = http::HeaderName::from_static(CACHE_HEADER);

/// What the caller asked of the cache for this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheDirective {
    /// Read and store as the policy says.
    Default,
    /// Neither read nor store (`x-tollgate-cache: no-store`,
    /// `Cache-Control: no-store`).
    NoStore,
    /// Skip the read, call upstream and store the fresh answer
    /// (`x-tollgate-cache: refresh`, `Cache-Control: no-cache`).
    Refresh,
}

/// Reads the directive from the request headers; `no-store` wins over
/// `refresh` when both are given. Unknown values are ignored.
pub fn directive(headers: &HeaderMap) -> CacheDirective {
    let mut out = CacheDirective::Default;
    for v in headers.get_all(CACHE_HEADER) {
        for token in v.to_str().unwrap_or_default().split(',') {
            match token.trim().to_ascii_lowercase().as_str() {
                "no-store" => return CacheDirective::NoStore,
                "refresh" => out = CacheDirective::Refresh,
                _ => {}
            }
        }
    }
    for v in headers.get_all(http::header::CACHE_CONTROL) {
        for token in v.to_str().unwrap_or_default().split(',') {
            match token.trim().to_ascii_lowercase().as_str() {
                "no-store" => return CacheDirective::NoStore,
                "no-cache" => out = CacheDirective::Refresh,
                _ => {}
            }
        }
    }
    out
}

/// How the cache took part in a call (`x-tollgate-cache` response header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Answered from cache, no upstream contact.
    Hit,
    /// Looked up (or refreshed) and fetched upstream; stored if clean.
    Miss,
    /// The cache was not used: no policy, policy off, the request not
    /// cacheable under it, or the caller said `no-store`.
    Bypass,
}

impl CacheStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Bypass => "bypass",
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn directives_from_headers() {
        assert_eq!(directive(&headers(&[])), CacheDirective::Default);
        assert_eq!(
            directive(&headers(&[("x-tollgate-cache", "no-store")])),
            CacheDirective::NoStore
        );
        assert_eq!(
            directive(&headers(&[("x-tollgate-cache", "Refresh")])),
            CacheDirective::Refresh
        );
        assert_eq!(
            directive(&headers(&[("cache-control", "max-age=0, no-store")])),
            CacheDirective::NoStore
        );
        assert_eq!(
            directive(&headers(&[("cache-control", "no-cache")])),
            CacheDirective::Refresh
        );
        assert_eq!(
            directive(&headers(&[
                ("x-tollgate-cache", "refresh"),
                ("cache-control", "no-store")
            ])),
            CacheDirective::NoStore
        );
        assert_eq!(
            directive(&headers(&[("x-tollgate-cache", "whatever")])),
            CacheDirective::Default
        );
    }
}
