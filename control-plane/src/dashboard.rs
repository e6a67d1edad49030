//! The built web dashboard (`dashboard/dist`), served as static files on the
//! admin port next to gRPC and gRPC-web: paths that are no gRPC service fall
//! through to here. Unknown page paths get `index.html` (the dashboard routes
//! in the browser); unknown asset paths get 404. No directory listings, no
//! path outside the directory.

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::{header, Method, Response, StatusCode, Uri};

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; \
img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Where the dashboard is looked for when no directory is configured.
pub const DEFAULT_DASHBOARD_DIR: &str = "dashboard/dist";

/// The directory to serve: the configured one, else [`DEFAULT_DASHBOARD_DIR`]
/// when it holds a build. `None` when there is nothing to serve.
pub fn resolve_dir(configured: Option<&Path>) -> Option<PathBuf> {
    let dir = match configured {
        Some(d) => d.to_path_buf(),
        None => PathBuf::from(DEFAULT_DASHBOARD_DIR),
    };
    if dir.join("index.html").is_file() {
        std::fs::canonicalize(&dir).ok()
    } else {
        if configured.is_some() {
            tracing::warn!(dir = %dir.display(), "no index.html in the dashboard directory; not serving the dashboard");
        }
        None
    }
}

/// Adds the static file fallback to the gRPC router.
pub fn with_static_files(router: axum::Router, dir: Option<PathBuf>) -> axum::Router {
    match dir {
        Some(dir) => router.fallback(move |method: Method, uri: Uri| {
            let dir = dir.clone();
            async move { serve(&dir, &method, uri.path()).await }
        }),
        None => router,
    }
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// The file under `dir` a URL path names, or `None` for paths that try to
/// leave it (`..`, backslashes, hidden files) or are not plain.
fn file_for(dir: &Path, url_path: &str) -> Option<PathBuf> {
    let rel = url_path.trim_start_matches('/');
    if rel.is_empty() {
        return Some(dir.join("index.html"));
    }
    let mut out = dir.to_path_buf();
    for seg in rel.split('/') {
        if seg.is_empty()
            || seg.starts_with('.')
            || seg.contains('\\')
            || seg.contains('%')
            || seg.contains('\0')
        {
            return None;
        }
        out.push(seg);
    }
    Some(out)
}

fn plain(status: StatusCode, msg: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::from(msg));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

async fn serve(dir: &Path, method: &Method, url_path: &str) -> Response<Body> {
    if method != Method::GET && method != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    let Some(mut file) = file_for(dir, url_path) else {
        return plain(StatusCode::NOT_FOUND, "not found\n");
    };
    let is_file = tokio::fs::metadata(&file)
        .await
        .map(|m| m.is_file())
        .unwrap_or(false);
    if !is_file {
        // Page paths (no extension) are the dashboard's own routes.
        let last = url_path.rsplit('/').next().unwrap_or("");
        if last.contains('.') {
            return plain(StatusCode::NOT_FOUND, "not found\n");
        }
        file = dir.join("index.html");
    }
    let bytes = match tokio::fs::read(&file).await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(path = %file.display(), error = %e, "cannot read a dashboard file");
            return plain(StatusCode::NOT_FOUND, "not found\n");
        }
    };
    // Vite puts content hashes in asset names: those never change.
    let cache = if url_path.starts_with("/assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        Body::from(bytes)
    };
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type(&file)),
    );
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static(cache),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::HeaderName::from_static("x-frame-options"),
        header::HeaderValue::from_static("DENY"),
    );
    h.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("no-referrer"),
    );
    // The app only loads its own bundle and talks to this origin; an
    // injected script or a framing page gets nothing.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(CSP),
    );
    r
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    async fn body(r: Response<Body>) -> String {
        let b = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        String::from_utf8(b.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn serves_files_spa_fallback_and_refuses_escapes() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("index.html"), "<html>app</html>").unwrap();
        std::fs::create_dir(d.path().join("assets")).unwrap();
        std::fs::write(d.path().join("assets/app-1.js"), "console.log(1)").unwrap();
        std::fs::write(d.path().join(".env"), "secret").unwrap();
        let dir = resolve_dir(Some(d.path())).unwrap();
        let get = Method::GET;

        let r = serve(&dir, &get, "/").await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert!(r.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'"));
        assert_eq!(body(r).await, "<html>app</html>");

        let r = serve(&dir, &get, "/assets/app-1.js").await;
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert!(r.headers()[header::CACHE_CONTROL]
            .to_str()
            .unwrap()
            .contains("immutable"));
        assert_eq!(body(r).await, "console.log(1)");

        let r = serve(&dir, &get, "/providers").await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(body(r).await, "<html>app</html>");

        for bad in [
            "/assets/missing.js",
            "/../etc/passwd",
            "/.env",
            "/assets/..%2f..%2fx",
            "/a\\b.js",
        ] {
            let r = serve(&dir, &get, bad).await;
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{bad}");
        }
        // A directory is never listed.
        let r = serve(&dir, &get, "/assets").await;
        assert_eq!(body(r).await, "<html>app</html>");
        assert_eq!(
            serve(&dir, &Method::POST, "/").await.status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert!(resolve_dir(Some(&d.path().join("assets"))).is_none());
    }
}
