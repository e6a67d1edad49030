//! The data plane against a fake control plane (a real tonic server on port
//! 0 that tests drive): subscribe, ack and reject, usage reporting with
//! retries, and static stability from the persisted snapshot.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{http, TestDp};
use futures::Stream;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tollgate_core::keys::hash_caller_key;
use tollgate_dp::{ConfigSourceSpec, DataPlaneConfig};
use tollgate_proto::sync::v1 as pb;
use tollgate_proto::sync::v1::sync_service_server::{SyncService, SyncServiceServer};
use tonic::{Request, Response, Status, Streaming};

const TOKEN: &str = "tgdp-test-token-0001";
const KEY: &str = "tg-cp-test-key";
const PROVIDER_KEY: &str = "sk-provider-secret-77";

/// A control plane that serves the snapshot in `current`, records hellos,
/// acks and usage, and fails the first `fail_usage` usage reports.
#[derive(Clone)]
struct FakeCp {
    current: watch::Sender<Option<pb::Snapshot>>,
    hellos: Arc<Mutex<Vec<pb::Hello>>>,
    acks: mpsc::UnboundedSender<pb::SnapshotAck>,
    usage: Arc<Mutex<Vec<pb::UsageBatch>>>,
    usage_seen: mpsc::UnboundedSender<usize>,
    fail_usage: Arc<AtomicU32>,
}

fn authorized<T>(req: &Request<T>) -> Result<(), Status> {
    let want = format!("Bearer {TOKEN}");
    match req
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
    {
        Some(v) if v == want => Ok(()),
        _ => Err(Status::unauthenticated("bad token")),
    }
}

#[tonic::async_trait]
impl SyncService for FakeCp {
    type SubscribeStream =
        Pin<Box<dyn Stream<Item = Result<pb::ControlPlaneMessage, Status>> + Send>>;

    async fn subscribe(
        &self,
        request: Request<Streaming<pb::DataPlaneMessage>>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        authorized(&request)?;
        let mut inbound = request.into_inner();
        let Some(pb::DataPlaneMessage {
            kind: Some(pb::data_plane_message::Kind::Hello(hello)),
        }) = inbound.message().await?
        else {
            return Err(Status::invalid_argument("hello first"));
        };
        self.hellos.lock().unwrap().push(hello);
        let (tx, rx) = mpsc::channel(8);
        let mut snapshots = self.current.subscribe();
        let acks = self.acks.clone();
        tokio::spawn(async move {
            let send = |s: pb::Snapshot| pb::ControlPlaneMessage {
                kind: Some(pb::control_plane_message::Kind::Snapshot(s)),
            };
            let first = snapshots.borrow_and_update().clone();
            if let Some(s) = first {
                if tx.send(Ok(send(s))).await.is_err() {
                    return;
                }
            }
            loop {
                tokio::select! {
                    changed = snapshots.changed() => {
                        if changed.is_err() { return; }
                        let next = snapshots.borrow_and_update().clone();
                        if let Some(s) = next {
                            if tx.send(Ok(send(s))).await.is_err() { return; }
                        }
                    }
                    msg = inbound.message() => match msg {
                        Ok(Some(pb::DataPlaneMessage { kind: Some(pb::data_plane_message::Kind::Ack(a)) })) => {
                            let _ = acks.send(a);
                        }
                        Ok(Some(_)) => {}
                        _ => return,
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn report_usage(
        &self,
        request: Request<pb::UsageBatch>,
    ) -> Result<Response<pb::UsageBatchAck>, Status> {
        authorized(&request)?;
        let batch = request.into_inner();
        let n = batch.records.len();
        self.usage.lock().unwrap().push(batch.clone());
        let _ = self.usage_seen.send(n);
        if self
            .fail_usage
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |f| f.checked_sub(1))
            .is_ok()
        {
            return Err(Status::unavailable("try again"));
        }
        Ok(Response::new(pb::UsageBatchAck {
            stored_ids: batch.records.into_iter().map(|r| r.id).collect(),
            duplicates: 0,
        }))
    }

    async fn report_target_health(
        &self,
        request: Request<pb::TargetHealthReport>,
    ) -> Result<Response<pb::TargetHealthAck>, Status> {
        authorized(&request)?;
        Ok(Response::new(pb::TargetHealthAck {}))
    }

    async fn acquire_lease(
        &self,
        request: Request<pb::LeaseRequest>,
    ) -> Result<Response<pb::LeaseGrant>, Status> {
        authorized(&request)?;
        Err(Status::unimplemented("no billing in this fake"))
    }

    async fn acquire_quota(
        &self,
        request: Request<pb::QuotaRequest>,
    ) -> Result<Response<pb::QuotaGrants>, Status> {
        authorized(&request)?;
        Err(Status::unimplemented("no rate limits in this fake"))
    }

    async fn return_lease(
        &self,
        request: Request<pb::LeaseReturn>,
    ) -> Result<Response<pb::LeaseReturnAck>, Status> {
        authorized(&request)?;
        Ok(Response::new(pb::LeaseReturnAck {}))
    }
}

struct Cp {
    url: String,
    fake: FakeCp,
    acks: mpsc::UnboundedReceiver<pb::SnapshotAck>,
    usage_seen: mpsc::UnboundedReceiver<usize>,
}

impl Cp {
    async fn start() -> Cp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (acks_tx, acks) = mpsc::unbounded_channel();
        let (usage_tx, usage_seen) = mpsc::unbounded_channel();
        let fake = FakeCp {
            current: watch::channel(None).0,
            hellos: Arc::default(),
            acks: acks_tx,
            usage: Arc::default(),
            usage_seen: usage_tx,
            fail_usage: Arc::default(),
        };
        let service = SyncServiceServer::new(fake.clone());
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await
                .unwrap();
        });
        Cp {
            url,
            fake,
            acks,
            usage_seen,
        }
    }

    fn push(&self, snapshot: pb::Snapshot) {
        self.fake.current.send_replace(Some(snapshot));
    }

    async fn next_ack(&mut self) -> pb::SnapshotAck {
        tokio::time::timeout(Duration::from_secs(20), self.acks.recv())
            .await
            .expect("an ack within 20 s")
            .unwrap()
    }
}

fn snapshot(version: u64, keys: &[&str]) -> pb::Snapshot {
    pb::Snapshot {
        version,
        created_at_ms: 1,
        tenants: vec![pb::TenantConfig {
            id: "tn_acme".into(),
            billing: None,
            name: "acme".into(),
            active: true,
            providers: vec![
                pb::ProviderConfig {
                    id: "pv_mock".into(),
                    name: "builtin".into(),
                    kind: "mock".into(),
                    base_url: String::new(),
                    api_key: String::new(),
                    ..Default::default()
                },
                pb::ProviderConfig {
                    id: "pv_up".into(),
                    name: "up".into(),
                    kind: "openai".into(),
                    base_url: "http://127.0.0.1:9/v1".into(),
                    api_key: PROVIDER_KEY.into(),
                    ..Default::default()
                },
            ],
            models: vec![pb::ModelConfig {
                id: "md_1".into(),
                name: "gpt-test".into(),
                provider_id: "pv_mock".into(),
                upstream_model: "mock-small".into(),
                created_at_ms: 0,
                ..Default::default()
            }],
            keys: keys
                .iter()
                .enumerate()
                .map(|(i, k)| pb::CallerKeyConfig {
                    id: format!("ck_{i}"),
                    name: format!("key{i}"),
                    key_hash: hash_caller_key(k),
                    expires_at_ms: 0,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
    }
}

fn start_dp(cp_url: &str, dir: tempfile::TempDir) -> TestDp {
    let config = dp_config(cp_url, dir.path());
    TestDp::start_in(config, Some(dir))
}

fn dp_config(cp_url: &str, data_dir: &std::path::Path) -> DataPlaneConfig {
    DataPlaneConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        ConfigSourceSpec::Cp {
            url: cp_url.to_string(),
            token: TOKEN.to_string(),
        },
    )
    .with_data_dir(data_dir)
    .with_node_id("dp-test")
}

async fn call(dp: &TestDp, key: &str) -> reqwest::Response {
    http()
        .post(format!("{}/v1/chat/completions", dp.url))
        .bearer_auth(key)
        .json(&json!({"model": "gpt-test", "messages": [{"role": "user", "content": "count me please"}]}))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribes_acks_rejects_and_applies_revocation() {
    let mut cp = Cp::start().await;
    cp.push(snapshot(1, &[KEY]));
    let dp = start_dp(&cp.url, tempfile::tempdir().unwrap());
    let ack = cp.next_ack().await;
    assert_eq!(
        (ack.version, ack.accepted, ack.reason.as_str()),
        (1, true, "")
    );
    {
        let hellos = cp.fake.hellos.lock().unwrap();
        assert_eq!(hellos[0].node_id, "dp-test");
        assert_eq!(hellos[0].current_version, 0);
        assert!(!hellos[0].software_version.is_empty());
    }
    assert_eq!(call(&dp, KEY).await.status(), 200);

    // An invalid snapshot is rejected with a reason; version 1 stays.
    let mut bad = snapshot(2, &[]);
    bad.tenants[0].models[0].provider_id = "pv_gone".into();
    cp.push(bad);
    let ack = cp.next_ack().await;
    assert_eq!((ack.version, ack.accepted), (2, false));
    assert!(ack.reason.contains("pv_gone"), "{}", ack.reason);
    assert_eq!(call(&dp, KEY).await.status(), 200);

    // The key disappears from the next version: revoked.
    cp.push(snapshot(3, &["tg-another-key"]));
    let ack = cp.next_ack().await;
    assert_eq!((ack.version, ack.accepted), (3, true));
    assert_eq!(call(&dp, KEY).await.status(), 401);
    assert_eq!(call(&dp, "tg-another-key").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_is_reported_once_per_call_and_retried_with_the_same_ids() {
    let mut cp = Cp::start().await;
    cp.fake.fail_usage.store(1, Ordering::SeqCst);
    cp.push(snapshot(1, &[KEY]));
    let dp = start_dp(&cp.url, tempfile::tempdir().unwrap());
    cp.next_ack().await;
    let mut request_ids = Vec::new();
    for _ in 0..3 {
        let resp = call(&dp, KEY).await;
        assert_eq!(resp.status(), 200);
        request_ids.push(resp.headers()["x-request-id"].to_str().unwrap().to_string());
    }
    // First report fails, the retry succeeds.
    let mut received = 0;
    while received < 6 {
        received += tokio::time::timeout(Duration::from_secs(20), cp.usage_seen.recv())
            .await
            .expect("usage within 20 s")
            .unwrap();
    }
    let batches = cp.fake.usage.lock().unwrap().clone();
    assert_eq!(batches.len(), 2, "{batches:?}");
    let ids = |b: &pb::UsageBatch| b.records.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
    assert_eq!(
        ids(&batches[0]),
        ids(&batches[1]),
        "a retry re-sends the same ids"
    );
    let b = &batches[1];
    assert_eq!(b.node_id, "dp-test");
    // Records are queued when each call's logging phase runs, which may
    // finish after the client has sent its next call: compare as sets.
    let mut got: Vec<String> = b.records.iter().map(|r| r.request_id.clone()).collect();
    got.sort();
    request_ids.sort();
    assert_eq!(got, request_ids);
    for r in &b.records {
        assert!(r.id.starts_with("ur_"));
        assert_eq!(r.tenant_id, "tn_acme");
        assert_eq!(r.key_id, "ck_0");
        assert_eq!(r.model, "gpt-test");
        assert_eq!(r.provider_id, "pv_mock");
        assert_eq!(r.upstream_model, "mock-small");
        assert_eq!(r.status_code, 200);
        assert_eq!(r.error_code, "");
        assert!(!r.stream);
        // "count me please": 3 words + 3; the reply quotes it: 12 words.
        assert_eq!((r.prompt_tokens, r.completion_tokens), (6, 12));
        assert!(r.started_at_ms > 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_without_the_control_plane_serves_the_persisted_snapshot() {
    let mut cp = Cp::start().await;
    cp.push(snapshot(5, &[KEY]));
    let dir = tempfile::tempdir().unwrap();
    let dp = TestDp::start_in(dp_config(&cp.url, dir.path()), None);
    assert!(cp.next_ack().await.accepted);
    assert_eq!(call(&dp, KEY).await.status(), 200);
    dp.stop().unwrap();

    // The persisted snapshot holds provider keys: never in clear, 0600.
    let file = dir.path().join("snapshot.bin");
    let bytes = std::fs::read(&file).unwrap();
    assert!(!bytes
        .windows(PROVIDER_KEY.len())
        .any(|w| w == PROVIDER_KEY.as_bytes()));
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // Restarted while the control plane is unreachable: ready at once.
    let dp = TestDp::start_in(dp_config("http://127.0.0.1:9", dir.path()), None);
    let ready = http()
        .get(format!("{}/readyz", dp.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let v: Value = ready.json().await.unwrap();
    assert_eq!(v["config_version"], 5);
    assert_eq!(call(&dp, KEY).await.status(), 200);
    dp.stop().unwrap();

    // Back with the control plane: the hello says which version it serves.
    let dp = TestDp::start_in(dp_config(&cp.url, dir.path()), None);
    let ack = cp.next_ack().await;
    assert_eq!((ack.version, ack.accepted), (5, true));
    let hellos = cp.fake.hellos.lock().unwrap().clone();
    assert_eq!(hellos.len(), 2);
    assert_eq!(hellos[1].current_version, 5);
    drop(dp);

    // Another token cannot read it: the data plane starts empty.
    let mut other = dp_config("http://127.0.0.1:9", dir.path());
    other.source = ConfigSourceSpec::Cp {
        url: "http://127.0.0.1:9".into(),
        token: "tgdp-someone-else".into(),
    };
    let dp = TestDp::start_in(other, None);
    let ready = http()
        .get(format!("{}/readyz", dp.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_any_config_it_is_live_but_not_ready() {
    let dp = start_dp("http://127.0.0.1:9", tempfile::tempdir().unwrap());
    let h = http()
        .get(format!("{}/healthz", dp.url))
        .send()
        .await
        .unwrap();
    assert_eq!(h.status(), 200);
    let r = http()
        .get(format!("{}/readyz", dp.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let resp = call(&dp, KEY).await;
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_ready");
}
