//! The load generator against the in-process lean mock: every load shape
//! completes with real HTTP over loopback (short windows; no benchmarking).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tollgate_bench::client::{chat_body, Conn, Target};
use tollgate_bench::load::{self, IdleStreams};
use tollgate_bench::mock::{self, MockConfig, HOLD_MODEL, RELEASE_PATH};

async fn mock_target() -> (mock::RunningMock, Target) {
    let m = mock::start("127.0.0.1:0".parse().unwrap(), MockConfig::default())
        .await
        .unwrap();
    let t = Target::new("direct", &m.base_url, "k").unwrap();
    (m, t)
}

#[tokio::test]
async fn closed_and_open_loops_count_answers_and_latency() {
    let (_m, t) = mock_target().await;
    let closed = load::closed_loop(&t, chat_body("m", false), 2, Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(closed.errors, 0, "{:?}", closed.first_error);
    assert!(closed.ok > 10, "{closed:?}");
    assert_eq!(closed.latency.count, closed.ok);

    let open = load::open_loop(
        &t,
        chat_body("m", false),
        100.0,
        4,
        Duration::from_millis(300),
    )
    .await
    .unwrap();
    assert_eq!(open.ok, 30, "{open:?}");
    assert_eq!(open.errors, 0);
    assert!(
        open.wall_secs >= 0.28,
        "the schedule spans the window: {open:?}"
    );
}

#[tokio::test]
async fn streams_report_first_token_before_the_end() {
    let (_m, t) = mock_target().await;
    let r = load::streams(&t, chat_body("m", true), 6, 3).await.unwrap();
    assert_eq!(r.ok, 6, "{:?}", r.first_error);
    // role + 16 words + finish + usage + [DONE]
    assert_eq!(r.data_events, 20);
    assert!(r.ttft.p50_ms <= r.total.p50_ms);
    assert_eq!(
        r.connections_closed_by_server, 0,
        "chunked SSE keeps the connection"
    );
}

#[tokio::test]
async fn held_streams_stay_open_until_released() {
    let (m, t) = mock_target().await;
    let held = IdleStreams::start(&t, chat_body(HOLD_MODEL, true), 20, 8);
    let open = held.wait_open(Duration::from_secs(10)).await;
    assert_eq!(open.opened, 20, "{:?}", open.first_error);
    assert_eq!(open.failed, 0);

    let mut conn = Conn::open(m.addr).await.unwrap();
    conn.exchange(t.post(RELEASE_PATH, bytes::Bytes::new()).unwrap())
        .await
        .unwrap();
    let done = held.finish(Duration::from_secs(10)).await;
    assert_eq!(done.completed, 20, "{:?}", done.first_error);
}
