//! The admin port serves the built dashboard over HTTP/1.1 next to gRPC and
//! gRPC-web: static files, SPA fallback, and gRPC-web calls from a browser.

use prost::Message as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tollgate_cp::ControlPlaneConfig;
use tollgate_proto::admin::v1 as pb;
use tollgate_proto::client::AdminClient;

/// One HTTP/1.1 request on a fresh connection; returns (status line +
/// headers, body).
async fn http1(addr: std::net::SocketAddr, head: &str, body: &[u8]) -> (String, Vec<u8>) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&out[..split]).to_string();
    (head, out[split + 4..].to_vec())
}

#[tokio::test]
async fn dashboard_and_grpc_web_share_the_admin_port() {
    let dir = tempfile::tempdir().unwrap();
    let dist = dir.path().join("dist");
    std::fs::create_dir_all(dist.join("assets")).unwrap();
    std::fs::write(
        dist.join("index.html"),
        "<!doctype html><title>Tollgate</title>",
    )
    .unwrap();
    std::fs::write(dist.join("assets/app-abc.js"), "export{}").unwrap();
    let mut config = ControlPlaneConfig::new(dir.path().join("data"))
        .with_listen("127.0.0.1:0".parse().unwrap());
    config.dashboard_dir = Some(dist);
    let cp = tollgate_cp::start(config).await.unwrap();
    assert!(cp.dashboard_dir.is_some());
    let addr = cp.addr;

    let get =
        |path: &str| format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n");
    let (head, body) = http1(addr, &get("/"), b"").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/html"),
        "{head}"
    );
    assert_eq!(body, b"<!doctype html><title>Tollgate</title>");
    let (head, _) = http1(addr, &get("/keys"), b"").await;
    assert!(head.starts_with("HTTP/1.1 200"), "SPA route: {head}");
    let (head, body) = http1(addr, &get("/assets/app-abc.js"), b"").await;
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/javascript"),
        "{head}"
    );
    assert_eq!(body, b"export{}");
    let (head, _) = http1(addr, &get("/assets/nope.js"), b"").await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");

    // A browser's gRPC-web call (binary framing over HTTP/1.1): a wrong
    // sign-in is answered in the trailers frame with UNAUTHENTICATED (16).
    let msg = pb::SignInRequest {
        email: "nobody@x.test".into(),
        password: "wrong-password".into(),
    }
    .encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(msg.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(&msg);
    let head = format!(
        "POST /tollgate.admin.v1.AuthService/SignIn HTTP/1.1\r\nhost: localhost\r\n\
         content-type: application/grpc-web+proto\r\nx-grpc-web: 1\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        frame.len()
    );
    let (resp_head, body) = http1(addr, &head, &frame).await;
    assert!(resp_head.starts_with("HTTP/1.1 200"), "{resp_head}");
    let text = String::from_utf8_lossy(&body).to_ascii_lowercase();
    let head_l = resp_head.to_ascii_lowercase();
    assert!(
        text.contains("grpc-status:16") || head_l.contains("grpc-status: 16"),
        "{resp_head}\n{text}"
    );
    // grpc-message is percent-encoded.
    assert!(
        text.contains("wrong%20email%20or%20password")
            || head_l.contains("wrong%20email%20or%20password"),
        "{text}"
    );

    // Native gRPC (HTTP/2) still works on the same port.
    let mut admin = AdminClient::connect(&cp.url, &cp.admin_token)
        .await
        .unwrap();
    admin
        .tenants
        .list_tenants(pb::ListTenantsRequest {})
        .await
        .unwrap();
    cp.shutdown().await.unwrap();
}

/// A stand-in provider: `GET /v1/models` answers 200 for one key, 401 else.
async fn model_list_upstream(good_key: &'static str) -> String {
    use axum::http::{HeaderMap, StatusCode};
    let app = axum::Router::new().route(
        "/v1/models",
        axum::routing::get(move |headers: HeaderMap| async move {
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if auth == format!("Bearer {good_key}") {
                (StatusCode::OK, r#"{"object":"list","data":[]}"#)
            } else {
                (
                    StatusCode::UNAUTHORIZED,
                    r#"{"error":{"message":"bad key"}}"#,
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/v1")
}

#[tokio::test]
async fn test_provider_reports_the_upstream_answer_without_the_key() {
    let cp = crate::harness::Cp::start().await;
    let mut op = AdminClient::connect(&cp.running().url, &cp.running().admin_token)
        .await
        .unwrap();
    op.tenants
        .create_tenant(pb::CreateTenantRequest {
            name: "acme".into(),
        })
        .await
        .unwrap();
    let upstream = model_list_upstream("sk-good-key-1234").await;
    // A port nothing listens on: bind, read the port, close.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/v1", l.local_addr().unwrap())
    };
    for (name, kind, base, key) in [
        ("good", "openai", upstream.as_str(), "sk-good-key-1234"),
        ("bad", "openai", upstream.as_str(), "sk-wrong-key-9999"),
        ("down", "openai", closed.as_str(), "sk-good-key-1234"),
        ("builtin", "mock", "", ""),
    ] {
        op.providers
            .add_provider(pb::AddProviderRequest {
                tenant: "acme".into(),
                name: name.into(),
                kind: kind.into(),
                base_url: base.into(),
                api_key: key.into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let test = |provider: &str| {
        let mut op = op.clone();
        let provider = provider.to_owned();
        async move {
            op.console
                .test_provider(pb::TestProviderRequest {
                    tenant: "acme".into(),
                    provider,
                })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let good = test("good").await;
    assert_eq!(
        (
            good.ok,
            good.status_code,
            good.message.as_str(),
            good.url.as_str()
        ),
        (
            true,
            200,
            "200: the provider accepted the key",
            format!("{upstream}/models").as_str()
        )
    );
    let bad = test("bad").await;
    assert_eq!(
        (bad.ok, bad.status_code, bad.message.as_str()),
        (false, 401, "401: the provider rejected the key")
    );
    let down = test("down").await;
    assert_eq!(
        (down.ok, down.status_code, down.message.as_str()),
        (false, 0, "could not connect to the provider")
    );
    assert!(test("builtin").await.ok);
    for r in [&good, &bad, &down] {
        let shown = format!("{r:?}");
        assert!(!shown.contains("sk-good-key") && !shown.contains("sk-wrong-key"));
    }
    // Testing reports; it does not take a credential out of rotation.
    let health = op
        .providers
        .list_provider_health(pb::ListProviderHealthRequest {
            tenant: "acme".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(health.providers.iter().all(|h| !h.disabled));
    let e = op
        .console
        .test_provider(pb::TestProviderRequest {
            tenant: "acme".into(),
            provider: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn code_batches_are_listed_for_operators_without_the_codes() {
    let cp = crate::harness::Cp::start().await;
    let mut op = AdminClient::connect(&cp.running().url, &cp.running().admin_token)
        .await
        .unwrap();
    op.tenants
        .create_tenant(pb::CreateTenantRequest {
            name: "acme".into(),
        })
        .await
        .unwrap();
    let made = op
        .billing
        .generate_codes(pb::GenerateCodesRequest {
            count: 3,
            value_micros: 2_500_000,
            expires_at_ms: 0,
            note: "launch".into(),
        })
        .await
        .unwrap()
        .into_inner();
    op.billing
        .redeem_code(pb::RedeemCodeRequest {
            tenant: "acme".into(),
            code: made.codes[0].clone(),
        })
        .await
        .unwrap();
    let list = op
        .console
        .list_code_batches(pb::ListCodeBatchesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.batches.len(), 1);
    let b = &list.batches[0];
    assert_eq!(
        (
            b.batch_id.as_str(),
            b.count,
            b.redeemed,
            b.value_micros,
            b.note.as_str()
        ),
        (made.batch_id.as_str(), 3, 1, 2_500_000, "launch")
    );
    assert!(!format!("{list:?}").contains(&made.codes[1]));
}
