//! Request limits of the data plane, driven by raw TCP clients: deep JSON,
//! too many messages, too many or too large headers, a slowloris header
//! dribble, a slow body and a connection cap each get a clear error in the
//! caller's protocol — and a single proxy worker keeps serving other calls
//! while slow clients hold their connections.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tollgate_e2e::{http, Gateway};

/// Tight limits so the test runs in seconds; one worker thread so a
/// stalled worker would show.
const LIMIT_ARGS: &[&str] = &[
    "--threads",
    "1",
    "--max-json-depth",
    "8",
    "--max-messages",
    "5",
    "--max-headers",
    "20",
    "--max-header-bytes",
    "4096",
    "--header-read-timeout-ms",
    "1500",
    "--body-read-timeout-ms",
    "1500",
];

/// A parsed HTTP/1.1 response read from a raw connection.
struct RawResponse {
    status: u16,
    head: String,
    body: Value,
}

fn addr(gw: &Gateway) -> String {
    gw.dp.url().trim_start_matches("http://").to_string()
}

/// Reads one response (head + content-length body) from `conn`.
async fn read_response(conn: &mut TcpStream) -> RawResponse {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .expect("content-length");
            if buf.len() >= end + 4 + len {
                let status = head[9..12].parse().unwrap();
                let body = serde_json::from_slice(&buf[end + 4..end + 4 + len]).unwrap();
                return RawResponse { status, head, body };
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut chunk))
            .await
            .expect("response within 10 s")
            .expect("read");
        assert!(n > 0, "connection closed before a whole response: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// After a refusal the server closes the connection.
async fn assert_closed(conn: &mut TcpStream) {
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut rest))
        .await
        .expect("closed within 5 s");
    assert!(n.is_ok_and(|n| n == 0), "{rest:?}");
}

async fn chat_ok(gw: &Gateway) -> Duration {
    let start = Instant::now();
    let resp = gw
        .post(
            "/v1/chat/completions",
            &json!({"model":"gpt-test","messages":[{"role":"user","content":"hi"}]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_limits_are_400_in_the_callers_shape() {
    let gw = Gateway::start_with_dp_args(LIMIT_ARGS).await;
    let deep = format!("{}1{}", "[".repeat(9), "]".repeat(9));
    let body = format!(
        r#"{{"model":"gpt-test","messages":[{{"role":"user","content":"hi"}}],"metadata":{deep}}}"#
    );
    let resp = http()
        .post(format!("{}/v1/chat/completions", gw.dp.url()))
        .bearer_auth(&gw.key)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "json_too_deep", "{v}");
    assert_eq!(v["error"]["type"], "invalid_request_error");

    // Anthropic route: Anthropic's error shape.
    let resp = http()
        .post(format!("{}/v1/messages", gw.dp.url()))
        .header("x-api-key", &gw.key)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("deeper than the limit of 8"));

    // Exactly at the depth limit is served.
    let ok = format!("{}1{}", "[".repeat(5), "]".repeat(5));
    let resp = gw
        .post(
            "/v1/chat/completions",
            &serde_json::from_str(&format!(
                r#"{{"model":"gpt-test","messages":[{{"role":"user","content":"hi"}}],"metadata":{{"x":{ok}}}}}"#
            ))
            .unwrap(),
        )
        .await;
    assert_eq!(resp.status(), 200);

    let six: Vec<Value> = (0..6)
        .map(|_| json!({"role":"user","content":"hi"}))
        .collect();
    let resp = gw
        .post(
            "/v1/chat/completions",
            &json!({"model":"gpt-test","messages":six}),
        )
        .await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "too_many_messages", "{v}");
    assert_eq!(v["error"]["param"], "messages");
    let resp = gw
        .post(
            "/v1/chat/completions",
            &json!({"model":"gpt-test","messages":&six[..5]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    // None of the refused calls reached the provider.
    assert_eq!(gw.mock.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_or_too_large_headers_are_431() {
    let gw = Gateway::start_with_dp_args(LIMIT_ARGS).await;
    // 21 headers (limit 20).
    let mut req = String::from("POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n");
    for i in 0..20 {
        req.push_str(&format!("x-filler-{i}: {i}\r\n"));
    }
    req.push_str("content-length: 2\r\n\r\n{}");
    let mut conn = TcpStream::connect(addr(&gw)).await.unwrap();
    conn.write_all(req.as_bytes()).await.unwrap();
    let r = read_response(&mut conn).await;
    assert_eq!(r.status, 431, "{}", r.head);
    assert_eq!(r.body["error"]["code"], "request_header_too_large");
    assert!(r.head.to_ascii_lowercase().contains("x-request-id: req_"));
    assert_closed(&mut conn).await;

    // One header larger than the 4096-byte section, on the Anthropic route.
    let req = format!(
        "POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-big: {}\r\ncontent-length: 2\r\n\r\n{{}}",
        "a".repeat(5000)
    );
    let mut conn = TcpStream::connect(addr(&gw)).await.unwrap();
    conn.write_all(req.as_bytes()).await.unwrap();
    let r = read_response(&mut conn).await;
    assert_eq!(r.status, 431);
    assert_eq!(r.body["type"], "error");
    assert_eq!(r.body["error"]["type"], "invalid_request_error");
    assert_closed(&mut conn).await;

    // 20 headers are fine.
    let mut req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\n",
        gw.key
    );
    for i in 0..16 {
        req.push_str(&format!("x-filler-{i}: {i}\r\n"));
    }
    let body = r#"{"model":"gpt-test","messages":[{"role":"user","content":"hi"}]}"#;
    req.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    let mut conn = TcpStream::connect(addr(&gw)).await.unwrap();
    conn.write_all(req.as_bytes()).await.unwrap();
    let r = read_response(&mut conn).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_get_408_and_do_not_stall_the_worker() {
    let gw = Gateway::start_with_dp_args(LIMIT_ARGS).await;
    let dp = addr(&gw);

    // Slowloris: a header dribbled one byte every 100 ms, never finished.
    let slowloris = |dp: String| async move {
        let mut conn = TcpStream::connect(dp).await.unwrap();
        let start = Instant::now();
        conn.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nx-slow: ")
            .await
            .unwrap();
        let mut reply = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            tokio::select! {
                n = conn.read(&mut chunk) => {
                    let n = n.unwrap_or(0);
                    if n == 0 { break; }
                    reply.extend_from_slice(&chunk[..n]);
                }
                _ = tokio::time::sleep(Duration::from_millis(100)) => {
                    if conn.write_all(b"a").await.is_err() { break; }
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "slowloris never cut off"
            );
        }
        (start.elapsed(), String::from_utf8_lossy(&reply).to_string())
    };
    // Slow body: a complete header, then part of the body, then silence.
    let slow_body = |dp: String, key: String| async move {
        let mut conn = TcpStream::connect(dp).await.unwrap();
        let start = Instant::now();
        let head = format!(
            "POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-api-key: {key}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"model\""
        );
        conn.write_all(head.as_bytes()).await.unwrap();
        let r = read_response(&mut conn).await;
        (start.elapsed(), r)
    };
    let loris: Vec<_> = (0..3)
        .map(|_| tokio::spawn(slowloris(dp.clone())))
        .collect();
    let body = tokio::spawn(slow_body(dp.clone(), gw.key.clone()));

    // Meanwhile the single worker serves ordinary calls at once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..3 {
        let took = chat_ok(&gw).await;
        assert!(took < Duration::from_millis(1000), "call took {took:?}");
    }

    for l in loris {
        let (took, reply) = l.await.unwrap();
        assert!(reply.starts_with("HTTP/1.1 408 "), "{reply}");
        assert!(reply.contains(r#""code":"request_timeout""#), "{reply}");
        assert!(
            took >= Duration::from_millis(1400) && took < Duration::from_secs(5),
            "{took:?}"
        );
    }
    let (took, r) = body.await.unwrap();
    assert_eq!(r.status, 408);
    assert_eq!(r.body["type"], "error", "{}", r.body);
    assert_eq!(r.body["error"]["type"], "timeout_error");
    assert!(took >= Duration::from_millis(1400) && took < Duration::from_secs(5));
    assert!(chat_ok(&gw).await < Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_get_503() {
    let gw = Gateway::start_with_dp_args(&["--max-connections", "3"]).await;
    let dp = addr(&gw);
    // Three idle connections fill the cap.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(&dp).await.unwrap());
    }
    // Give the server a moment to account for them.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = TcpStream::connect(&dp).await.unwrap();
    let r = read_response(&mut extra).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.body["error"]["code"], "too_many_connections");
    assert_closed(&mut extra).await;

    // Freeing one lets a call through.
    drop(held.pop());
    let start = Instant::now();
    loop {
        let resp = http()
            .post(format!("{}/v1/chat/completions", gw.dp.url()))
            .bearer_auth(&gw.key)
            .json(&json!({"model":"gpt-test","messages":[{"role":"user","content":"hi"}]}))
            .send()
            .await;
        if resp.as_ref().is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "{resp:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
