//! The last accepted snapshot on disk, so a data plane restarted while the
//! control plane is down serves at once (static stability).
//!
//! The snapshot holds decrypted provider keys, so the file is encrypted with
//! AES-256-GCM under a key derived from the data-plane token (which the
//! operator already protects), written to a temp file with mode 0600, synced
//! and renamed over the old one.
//!
//! Layout: `MAGIC (8) | nonce (12) | ciphertext+tag`, AAD = `MAGIC`.

use std::io::Write;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use prost::Message;
use rand::RngCore;
use sha2::{Digest, Sha256};
use tollgate_proto::sync::v1 as pb;

const MAGIC: &[u8; 8] = b"TGSNAP1\0";
const NONCE_LEN: usize = 12;
const KEY_DOMAIN: &[u8] = b"tollgate-dp snapshot encryption v1\0";
/// File name under the data directory.
pub const SNAPSHOT_FILE: &str = "snapshot.bin";

/// Why the persisted snapshot could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("I/O on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0} is not a Tollgate snapshot file")]
    NotASnapshot(String),
    #[error("{0} cannot be decrypted with this token (another token, or corrupted)")]
    Decrypt(String),
    #[error("{0} decrypted but does not decode: {1}")]
    Decode(String, String),
    #[error("encryption failed")]
    Encrypt,
}

/// Reads and writes `<data-dir>/snapshot.bin`.
pub struct SnapshotFile {
    path: PathBuf,
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for SnapshotFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SnapshotFile {
    /// The snapshot file in `data_dir`, encrypted under a key derived from
    /// `token`.
    pub fn new(data_dir: &Path, token: &str) -> SnapshotFile {
        let mut h = Sha256::new();
        h.update(KEY_DOMAIN);
        h.update(token.as_bytes());
        let key = h.finalize();
        SnapshotFile {
            path: data_dir.join(SNAPSHOT_FILE),
            cipher: Aes256Gcm::new(&key),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: std::io::Error) -> PersistError {
        PersistError::Io {
            path: self.path.display().to_string(),
            source,
        }
    }

    /// The persisted snapshot, `Ok(None)` when there is none.
    pub fn load(&self) -> Result<Option<pb::Snapshot>, PersistError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io(e)),
        };
        let name = self.path.display().to_string();
        if bytes.len() < MAGIC.len() + NONCE_LEN || &bytes[..MAGIC.len()] != MAGIC {
            return Err(PersistError::NotASnapshot(name));
        }
        let (nonce, ciphertext) = bytes[MAGIC.len()..].split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: MAGIC,
                },
            )
            .map_err(|_| PersistError::Decrypt(name.clone()))?;
        pb::Snapshot::decode(plain.as_slice())
            .map(Some)
            .map_err(|e| PersistError::Decode(name, e.to_string()))
    }

    /// Replaces the persisted snapshot atomically.
    pub fn save(&self, snapshot: &pb::Snapshot) -> Result<(), PersistError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &snapshot.encode_to_vec(),
                    aad: MAGIC,
                },
            )
            .map_err(|_| PersistError::Encrypt)?;
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| self.io(e))?;
        }
        let tmp = self
            .path
            .with_extension(format!("tmp.{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(&tmp)?;
            f.write_all(MAGIC)?;
            f.write_all(&nonce)?;
            f.write_all(&ciphertext)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            // Make the rename itself durable.
            if let Some(dir) = self.path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            self.io(e)
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::compile::tests::snapshot;

    #[test]
    fn round_trip_is_encrypted_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let file = SnapshotFile::new(dir.path(), "tgdp-token-1");
        assert!(file.load().unwrap().is_none());
        let snap = snapshot(42);
        file.save(&snap).unwrap();
        assert_eq!(file.load().unwrap(), Some(snap.clone()));

        let raw = std::fs::read(file.path()).unwrap();
        let needle = b"sk-upstream-secret";
        assert!(!raw.windows(needle.len()).any(|w| w == needle));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(file.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Saving again replaces it and leaves no temp file behind.
        file.save(&snapshot(43)).unwrap();
        assert_eq!(file.load().unwrap().unwrap().version, 43);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(SNAPSHOT_FILE)]);
    }

    #[test]
    fn wrong_token_or_garbage_fails_to_load() {
        let dir = tempfile::tempdir().unwrap();
        SnapshotFile::new(dir.path(), "tgdp-token-1")
            .save(&snapshot(1))
            .unwrap();
        let other = SnapshotFile::new(dir.path(), "tgdp-token-2");
        assert!(matches!(other.load(), Err(PersistError::Decrypt(_))));
        std::fs::write(dir.path().join(SNAPSHOT_FILE), b"hello").unwrap();
        assert!(matches!(other.load(), Err(PersistError::NotASnapshot(_))));
    }
}
