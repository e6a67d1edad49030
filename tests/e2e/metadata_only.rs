//! Request logs and usage are metadata only: a distinctive prompt string
//! reaches the upstream but appears nowhere in what the gateway writes —
//! the control plane's SQLite files (database and WAL), the control-plane
//! and data-plane logs, and the data plane's data directory (usage spool,
//! persisted snapshot).

use std::path::{Path, PathBuf};

use serde_json::json;
use tollgate_dp::metering::spool::{Spool, SPOOL_DIR};
use tollgate_e2e::Gateway;

const PROMPT: &str = "zebra-quartz-4419";

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Files under `dir` whose bytes contain the prompt.
fn files_with_prompt(dir: &Path) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|p| {
            let bytes = std::fs::read(p).unwrap_or_default();
            bytes.windows(PROMPT.len()).any(|w| w == PROMPT.as_bytes())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_text_appears_in_no_database_log_or_spool() {
    let mut gw = Gateway::start().await;
    let calls = [
        json!({"model": "gpt-test", "messages": [
            {"role": "system", "content": format!("system says {PROMPT}")},
            {"role": "user", "content": format!("please repeat {PROMPT}")}]}),
        json!({"model": "gpt-test", "stream": true,
               "messages": [{"role": "user", "content": format!("stream {PROMPT}")}]}),
        json!({"model": "gpt-test", "user": PROMPT,
               "messages": [{"role": "user", "content": PROMPT}]}),
        // Error paths: unknown model, and a body that does not validate.
        json!({"model": "no-such-model", "messages": [{"role": "user", "content": PROMPT}]}),
        json!({"model": "gpt-test", "messages": PROMPT}),
    ];
    let mut ok = 0;
    for body in &calls {
        let resp = gw.post("/v1/chat/completions", body).await;
        if resp.status() == 200 {
            ok += 1;
        }
        let _ = resp.bytes().await.unwrap();
    }
    assert_eq!(ok, 3);
    // The prompt did go through the gateway.
    let upstream = gw.mock.requests();
    assert_eq!(upstream.len(), 3);
    assert!(upstream.iter().all(|r| r.body.to_string().contains(PROMPT)));

    // Usage and logs are written (the spool holds the three records).
    gw.wait_for_usage_calls(3).await;
    let spool = Spool::inspect(&gw.dp.data_dir.join(SPOOL_DIR)).unwrap();
    assert_eq!(spool.appended, 3, "{spool:?}");
    let root = gw.dir.path().to_path_buf();
    let written = files_under(&root);
    for expected in ["tollgate.db", "spool", "cp-", "dp-"] {
        assert!(
            written
                .iter()
                .any(|p| p.to_string_lossy().contains(expected)),
            "no {expected} file among {written:?}"
        );
    }
    assert_eq!(files_with_prompt(&root), Vec::<PathBuf>::new());

    // Stopping flushes the SQLite WAL into the database and ends the logs.
    gw.dp.proc.terminate().await;
    gw.cp.proc.terminate().await;
    assert_eq!(files_with_prompt(&root), Vec::<PathBuf>::new());

    // The scan does find the string when it is there.
    let canary = gw.dp.data_dir.join(SPOOL_DIR).join("canary");
    std::fs::write(&canary, format!("xx{PROMPT}xx")).unwrap();
    assert_eq!(files_with_prompt(&root), vec![canary]);
}
