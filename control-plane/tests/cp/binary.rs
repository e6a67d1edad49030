//! The `tollgate-cp` binary: ready line on stdout, graceful SIGTERM.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tollgate_proto::admin::v1 as pb;

use crate::harness::Admin;

#[cfg(unix)]
#[tokio::test]
async fn prints_ready_line_serves_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate-cp"))
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--listen")
        .arg("127.0.0.1:0")
        .env_remove("TOLLGATE_ADMIN_TOKEN")
        .env_remove("TOLLGATE_DP_TOKEN")
        .env_remove("TOLLGATE_MASTER_KEY")
        .env_remove("TOLLGATE_MASTER_KEY_FILE")
        .env_remove("TOLLGATE_DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let url = ready
        .strip_prefix("tollgate-cp ready: ")
        .unwrap()
        .to_owned();
    let port: u16 = url
        .strip_prefix("http://127.0.0.1:")
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(port, 0);
    let token = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
    let mut rest = String::new();
    while let Some(l) = lines.next_line().await.unwrap() {
        rest.push_str(&l);
        rest.push('\n');
        if rest.contains("data-plane token") {
            break;
        }
    }
    assert!(
        rest.contains("admin.token") && rest.contains("dp.token"),
        "{rest}"
    );
    assert!(!rest.contains(token.trim()));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("cp.url"))
            .unwrap()
            .trim(),
        url
    );

    let ch = tonic::transport::Channel::from_shared(url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut a = Admin::new(ch, token.trim());
    a.tenant("acme").await;
    let list = a
        .tenants
        .list_tenants(pb::ListTenantsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.tenants.len(), 1);

    let pid = child.id().unwrap().to_string();
    let st = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(st.success());
    let exit = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}
