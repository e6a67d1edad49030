//! `tollgate-cp rotate-master-key --new-key-file F`: re-encrypts every
//! stored provider credential under a new master key in one transaction,
//! then (when the key lives in the data directory) replaces `master.key`.
//! Run it with the control plane stopped. Re-running after an interruption
//! is safe: credentials already under the new key are skipped.

use std::path::Path;

use anyhow::Context;

use crate::config::MasterKeySource;
use crate::crypto::{KeyEncryptionKey, LocalKek};
use crate::secrets_files::{self, DATABASE_FILE, MASTER_KEY_FILE};
use crate::store::{sqlite_url, Store};

/// Rotates from the configured master key to the one in `new_key_file`.
/// Returns a one-line summary (no key material).
pub async fn rotate_master_key(
    data_dir: &Path,
    database_url: Option<String>,
    current: &MasterKeySource,
    new_key_file: &Path,
) -> anyhow::Result<String> {
    let current_key = secrets_files::load_master_key(current, data_dir)
        .context("cannot load the current master key")?;
    let new_key = secrets_files::load_master_key(
        &MasterKeySource::File(new_key_file.to_path_buf()),
        data_dir,
    )
    .with_context(|| {
        format!(
            "cannot load the new master key from {}",
            new_key_file.display()
        )
    })?;
    let old_kek = LocalKek::new(&current_key)?;
    let new_kek = LocalKek::new(&new_key)?;
    let url = database_url.unwrap_or_else(|| sqlite_url(&data_dir.join(DATABASE_FILE)));
    let store = Store::connect(&url).await?;
    let report = store.rotate_master_key(&old_kek, &new_kek).await?;
    store.close().await;
    let mut summary = format!(
        "re-encrypted {} provider credential(s) from key {} to key {} ({} already under it, {} without a key)",
        report.rotated,
        old_kek.key_id(),
        new_kek.key_id(),
        report.already,
        report.empty
    );
    match current {
        MasterKeySource::DataDir => {
            let path = data_dir.join(MASTER_KEY_FILE);
            secrets_files::replace_file(&path, new_key.to_base64().expose().as_bytes(), 0o600)
                .with_context(|| format!("cannot replace {}", path.display()))?;
            summary.push_str(&format!("; {} now holds the new key", path.display()));
        }
        MasterKeySource::File(_) | MasterKeySource::Base64(_) => summary.push_str(
            "; start the control plane with the new key (--master-key-file / TOLLGATE_MASTER_KEY)",
        ),
    }
    Ok(summary)
}
