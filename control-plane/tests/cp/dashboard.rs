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
