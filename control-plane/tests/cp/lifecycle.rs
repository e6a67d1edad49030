//! Data-dir files, restart, overrides.

use std::time::Duration;

use tollgate_cp::{ControlPlaneConfig, MasterKeySource};
use tollgate_proto::admin::v1 as pb;

use crate::harness::{start_in, Cp, OPENAI_KEY};
use crate::sync::subscribe;

#[cfg(unix)]
fn mode(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn first_start_creates_private_secret_files_and_url_file() {
    let cp = Cp::start().await;
    let dir = cp.running().data_dir.clone();
    for f in ["master.key", "admin.token", "dp.token"] {
        #[cfg(unix)]
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }
    let admin = std::fs::read_to_string(dir.join("admin.token")).unwrap();
    assert_eq!(admin.trim(), cp.running().admin_token);
    assert!(admin.starts_with("tgop-"));
    let dp = std::fs::read_to_string(dir.join("dp.token")).unwrap();
    assert_eq!(dp.trim(), cp.running().dp_token);
    assert!(dp.starts_with("tgdp-"));
    let url = std::fs::read_to_string(dir.join("cp.url")).unwrap();
    assert_eq!(url.trim(), cp.running().url);
    assert!(url.starts_with("http://127.0.0.1:"));
    assert!(dir.join("tollgate.db").exists());
}

#[tokio::test]
async fn restart_keeps_data_tokens_and_master_key() {
    let cp = Cp::start().await;
    let (admin_token, dp_token) = (
        cp.running().admin_token.clone(),
        cp.running().dp_token.clone(),
    );
    let mut a = cp.admin().await;
    a.tenant("acme").await;
    let p = a.provider("acme", "openai", OPENAI_KEY).await;
    drop(a);
    let dir = cp.shutdown().await;

    let cp = Cp {
        cp: Some(start_in(dir.path()).await),
        dir,
    };
    assert_eq!(cp.running().admin_token, admin_token);
    assert_eq!(cp.running().dp_token, dp_token);
    let mut a = cp.admin().await;
    let listed = a
        .providers
        .list_providers(pb::ListProvidersRequest {
            tenant: "acme".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .providers;
    assert_eq!(listed, vec![p.clone()]);
    // The stored key still decrypts under the persisted master key.
    let mut sub = subscribe(&cp, "dp-restart").await;
    let msg = tokio::time::timeout(Duration::from_secs(1), sub.rx.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let Some(tollgate_proto::sync::v1::control_plane_message::Kind::Snapshot(s)) = msg.kind else {
        panic!("expected a snapshot");
    };
    assert_eq!(s.tenants[0].providers[0].api_key, OPENAI_KEY);
}

#[tokio::test]
async fn start_fails_clearly_with_a_different_master_key() {
    let cp = Cp::start().await;
    cp.admin().await.tenant("acme").await;
    cp.admin()
        .await
        .provider("acme", "openai", OPENAI_KEY)
        .await;
    let dir = cp.shutdown().await;
    let mut config =
        ControlPlaneConfig::new(dir.path()).with_listen("127.0.0.1:0".parse().unwrap());
    config.master_key =
        MasterKeySource::Base64("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into());
    let err = tollgate_cp::start(config).await.unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("master key"), "{msg}");
    assert!(!msg.contains(OPENAI_KEY));
}

#[tokio::test]
async fn overrides_are_used_and_not_written_to_disk() {
    let dir = tempfile::tempdir().unwrap();
    let mut config =
        ControlPlaneConfig::new(dir.path()).with_listen("127.0.0.1:0".parse().unwrap());
    config.admin_token = Some("tgop-from-env-0123456789".into());
    config.dp_token = Some("tgdp-from-env-0123456789".into());
    config.master_key =
        MasterKeySource::Base64("AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=".into());
    let cp = tollgate_cp::start(config).await.unwrap();
    assert_eq!(cp.admin_token, "tgop-from-env-0123456789");
    for f in ["admin.token", "dp.token", "master.key"] {
        assert!(!dir.path().join(f).exists(), "{f}");
    }
    let debug = format!("{cp:?}");
    assert!(!debug.contains("from-env"));
    cp.shutdown().await.unwrap();
}
