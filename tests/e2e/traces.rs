//! OpenTelemetry traces end to end: a real data plane exports to a local
//! OTLP collector (a tonic server implementing the collector's
//! `TraceService`) in this test. Checked: span names, kinds, GenAI
//! attributes, parent/child links, the caller's W3C `traceparent` honoured
//! (trace id, parent, sampled flag) and one sent to the upstream per attempt
//! (its span id as parent), and no prompt, completion or key in any span.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Av;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::{json, Value};
use tollgate_e2e::{http, Gateway};
use tollgate_mock::Fault;

/// A span received, with the attributes of its resource.
type Received = (Vec<KeyValue>, Span);

/// Everything the collector was sent.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Received>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut got = self.spans.lock().unwrap();
        for rs in req.into_inner().resource_spans {
            let resource = rs.resource.map(|r| r.attributes).unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    got.push((resource.clone(), span));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Collector {
    async fn start() -> (String, Collector) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let collector = Collector::default();
        let service = TraceServiceServer::new(collector.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        (format!("http://{addr}"), collector)
    }

    /// The spans of `trace_id` once there are `n` of them.
    async fn wait_for(&self, trace_id: &[u8], n: usize) -> Vec<Span> {
        let start = Instant::now();
        loop {
            let got: Vec<Span> = self
                .spans
                .lock()
                .unwrap()
                .iter()
                .filter(|(_, s)| s.trace_id == trace_id)
                .map(|(_, s)| s.clone())
                .collect();
            if got.len() >= n {
                assert_eq!(got.len(), n, "{got:#?}");
                return got;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{n} spans of the trace never arrived: {got:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn all(&self) -> Vec<Received> {
        self.spans.lock().unwrap().clone()
    }
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Av> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn str_attr<'a>(span: &'a Span, key: &str) -> &'a str {
    match attr(&span.attributes, key) {
        Some(Av::StringValue(s)) => s,
        other => panic!(
            "{key} is not a string attribute of {}: {other:?}",
            span.name
        ),
    }
}

fn int_attr(span: &Span, key: &str) -> i64 {
    match attr(&span.attributes, key) {
        Some(Av::IntValue(i)) => *i,
        other => panic!("{key} is not an int attribute of {}: {other:?}", span.name),
    }
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Every string an attribute of `span` holds.
fn strings(span: &Span) -> Vec<String> {
    let mut out = vec![span.name.clone()];
    for kv in &span.attributes {
        if let Some(Av::StringValue(s)) = kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            out.push(s.clone());
        }
    }
    if let Some(st) = &span.status {
        out.push(st.message.clone());
    }
    out
}

const PROMPT: &str = "the secret ingredient is cardamom";

fn chat(stream: bool) -> Value {
    json!({"model": "gpt-test", "stream": stream, "max_tokens": 64, "temperature": 0.25,
           "stream_options": {"include_usage": stream},
           "messages": [{"role": "user", "content": PROMPT}]})
}

async fn call(gw: &Gateway, traceparent: Option<&str>, body: &Value) -> reqwest::Response {
    let mut req = http()
        .post(format!("{}/v1/chat/completions", gw.dp.url()))
        .bearer_auth(&gw.key)
        .json(body);
    if let Some(tp) = traceparent {
        req = req.header("traceparent", tp);
    }
    req.send().await.unwrap()
}

/// The `traceparent` headers the mock upstream received, in order, from
/// request number `from` on.
fn upstream_traceparents(gw: &Gateway, from: usize) -> Vec<String> {
    gw.mock.requests()[from..]
        .iter()
        .filter(|r| r.path.ends_with("/chat/completions"))
        .map(|r| r.header("traceparent").unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_follow_the_genai_conventions_and_link_caller_and_upstream() {
    let (collector_url, collector) = Collector::start().await;
    // Ratio 0: only calls whose caller sampled them are recorded.
    let gw = Gateway::start_with_dp_args(&[
        "--otlp-endpoint",
        &collector_url,
        "--trace-sample-ratio",
        "0",
        "--otel-service-name",
        "gateway-under-test",
        "--otel-resource-attributes",
        "deployment.environment=e2e",
    ])
    .await;

    // 1. A sampled caller; the first attempt fails (500), the retry answers.
    let trace_hex = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let tp = format!("00-{trace_hex}-{caller_span}-01");
    let before = gw.mock.requests().len();
    gw.mock.script([Fault::status(500), Fault::Ok]);
    let r = call(&gw, Some(&tp), &chat(false)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-tollgate-attempts"], "2");
    let answer: Value = r.json().await.unwrap();
    let completion = answer["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    let spans = collector.wait_for(&unhex(trace_hex), 3).await;

    let server: Vec<&Span> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Server as i32)
        .collect();
    assert_eq!(server.len(), 1, "{spans:#?}");
    let root = server[0];
    assert_eq!(root.name, "chat gpt-test");
    assert_eq!(hex(&root.parent_span_id), caller_span);
    assert_eq!(str_attr(root, "gen_ai.operation.name"), "chat");
    assert_eq!(str_attr(root, "gen_ai.provider.name"), "openai");
    assert_eq!(str_attr(root, "gen_ai.request.model"), "gpt-test");
    assert_eq!(str_attr(root, "gen_ai.response.model"), "mock-small");
    assert_eq!(
        int_attr(root, "gen_ai.usage.input_tokens"),
        answer["usage"]["prompt_tokens"].as_i64().unwrap()
    );
    assert_eq!(
        int_attr(root, "gen_ai.usage.output_tokens"),
        answer["usage"]["completion_tokens"].as_i64().unwrap()
    );
    assert_eq!(int_attr(root, "gen_ai.request.max_tokens"), 64);
    assert_eq!(
        attr(&root.attributes, "gen_ai.request.temperature"),
        Some(&Av::DoubleValue(0.25))
    );
    assert_eq!(int_attr(root, "http.response.status_code"), 200);
    assert_eq!(str_attr(root, "tollgate.tenant"), gw.tenant_id);
    assert_eq!(str_attr(root, "tollgate.provider"), "up");
    assert_eq!(int_attr(root, "tollgate.attempts"), 2);
    assert_eq!(int_attr(root, "tollgate.cost_micros"), 0);
    assert!(attr(&root.attributes, "error.type").is_none());
    assert!(root.status.is_none(), "{:?}", root.status);
    assert!(root.end_time_unix_nano >= root.start_time_unix_nano);

    // One CLIENT child per attempt, in order, inside the call's span.
    let mut attempts: Vec<&Span> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Client as i32)
        .collect();
    attempts.sort_by_key(|s| int_attr(s, "tollgate.attempt"));
    assert_eq!(attempts.len(), 2);
    let mock_host = reqwest::Url::parse(&gw.mock.base_url).unwrap();
    for (n, a) in attempts.iter().enumerate() {
        assert_eq!(a.name, "chat mock-small");
        assert_eq!(
            a.parent_span_id, root.span_id,
            "attempt {n} is a child of the call"
        );
        assert_eq!(int_attr(a, "tollgate.attempt"), n as i64 + 1);
        assert_eq!(str_attr(a, "gen_ai.provider.name"), "openai");
        assert_eq!(str_attr(a, "gen_ai.request.model"), "mock-small");
        assert_eq!(str_attr(a, "tollgate.provider"), "up");
        assert_eq!(str_attr(a, "server.address"), mock_host.host_str().unwrap());
        assert_eq!(
            int_attr(a, "server.port"),
            i64::from(mock_host.port().unwrap())
        );
        assert!(a.start_time_unix_nano >= root.start_time_unix_nano);
        assert!(a.end_time_unix_nano <= root.end_time_unix_nano);
    }
    assert_eq!(int_attr(attempts[0], "http.response.status_code"), 500);
    assert_eq!(str_attr(attempts[0], "error.type"), "upstream_status");
    assert!(attempts[0].status.is_some());
    assert_eq!(int_attr(attempts[1], "http.response.status_code"), 200);
    assert!(attr(&attempts[1].attributes, "error.type").is_none());
    assert!(attempts[1].start_time_unix_nano >= attempts[0].end_time_unix_nano);

    // The upstream got a traceparent per attempt: same trace, the attempt's
    // span as parent, sampled.
    let sent = upstream_traceparents(&gw, before);
    assert_eq!(
        sent,
        attempts
            .iter()
            .map(|a| format!("00-{trace_hex}-{}-01", hex(&a.span_id)))
            .collect::<Vec<_>>()
    );

    // 2. A streamed call from the same caller trace: usage from the stream.
    let tp2 = format!("00-{trace_hex}-1111111111111111-01");
    let r = call(&gw, Some(&tp2), &chat(true)).await;
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    let last_usage = tollgate_e2e::sse_data(&body)
        .iter()
        .filter(|d| d.as_str() != "[DONE]")
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .rfind(|v| v["usage"].is_object())
        .unwrap();
    let spans = collector.wait_for(&unhex(trace_hex), 5).await;
    let stream_root = spans
        .iter()
        .find(|s| hex(&s.parent_span_id) == "1111111111111111")
        .unwrap();
    assert_eq!(stream_root.name, "chat gpt-test");
    assert_eq!(
        attr(&stream_root.attributes, "tollgate.stream"),
        Some(&Av::BoolValue(true))
    );
    assert_eq!(
        int_attr(stream_root, "gen_ai.usage.output_tokens"),
        last_usage["usage"]["completion_tokens"].as_i64().unwrap()
    );
    assert!(int_attr(stream_root, "tollgate.time_to_first_token_ms") >= 0);

    // 3. An unsampled caller and a caller without traceparent (ratio 0):
    // nothing recorded, but the upstream still gets the trace context.
    let before = gw.mock.requests().len();
    let unsampled_trace = "0af7651916cd43dd8448eb211c80319c";
    let r = call(
        &gw,
        Some(&format!("00-{unsampled_trace}-b7ad6b7169203331-00")),
        &chat(false),
    )
    .await;
    assert_eq!(r.status(), 200);
    let r = call(&gw, None, &chat(false)).await;
    assert_eq!(r.status(), 200);
    let sent = upstream_traceparents(&gw, before);
    assert_eq!(sent.len(), 2);
    assert!(
        sent[0].starts_with(&format!("00-{unsampled_trace}-")) && sent[0].ends_with("-00"),
        "{sent:?}"
    );
    assert_ne!(
        &sent[0][36..52],
        "b7ad6b7169203331",
        "the gateway's own span id"
    );
    assert!(sent[1].len() == 55 && sent[1].ends_with("-00"), "{sent:?}");
    assert!(!sent[1].contains(unsampled_trace));

    // 4. A failing call of a sampled caller: error attributes on both levels.
    gw.mock.set_default(Fault::status(500));
    let failing_trace = "5b8efff798038103d269b633813fc60c";
    let r = call(
        &gw,
        Some(&format!("00-{failing_trace}-eee19b7ec3c1b174-01")),
        &chat(false),
    )
    .await;
    let status = r.status().as_u16();
    assert!(status >= 500, "{status}");
    gw.mock.set_default(Fault::Ok);
    let attempts_made: usize = r.headers()["x-tollgate-attempts"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let spans = collector
        .wait_for(&unhex(failing_trace), 1 + attempts_made)
        .await;
    let root = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .unwrap();
    assert_eq!(
        int_attr(root, "http.response.status_code"),
        i64::from(status)
    );
    assert_eq!(str_attr(root, "error.type"), "upstream_status");
    assert!(root.status.is_some());
    assert!(attr(&root.attributes, "gen_ai.response.model").is_none());

    // Nothing else was exported: the unsampled calls left no span.
    let everything = collector.all();
    assert_eq!(
        everything.len(),
        3 + 2 + 1 + attempts_made,
        "{everything:#?}"
    );
    for (resource, span) in &everything {
        assert_eq!(
            attr(resource, "service.name"),
            Some(&Av::StringValue("gateway-under-test".into()))
        );
        assert_eq!(
            attr(resource, "deployment.environment"),
            Some(&Av::StringValue("e2e".into()))
        );
        assert_eq!(
            attr(resource, "service.instance.id"),
            Some(&Av::StringValue("dp-1".into()))
        );
        // Metadata only: no prompt, no completion, no key.
        for text in strings(span) {
            assert!(
                !text.contains("cardamom"),
                "prompt in {}: {text}",
                span.name
            );
            assert!(
                completion.is_empty() || !text.contains(&completion),
                "completion in {}: {text}",
                span.name
            );
            assert!(!text.contains(&gw.key), "caller key in {}", span.name);
            assert!(
                !text.contains(tollgate_e2e::UPSTREAM_KEY),
                "provider key in {}",
                span.name
            );
        }
    }

    // The access log names the trace of a traced call.
    let log = gw.dp.proc.log_text();
    assert!(log.contains(trace_hex), "trace id not in the access log");
}
