//! Files the control plane keeps in its data directory: the master key and
//! the two tokens, generated on first start. Each is created atomically (a
//! private temp file hard-linked into place, so a reader never sees a partial
//! file and two processes starting together agree on one value) with mode
//! 0600. Overrides from the environment are never written to disk.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rand::rngs::OsRng;
use rand::RngCore;

use crate::config::{data_path, MasterKeySource};
use crate::crypto::MasterKey;
use crate::secret::SecretString;

pub const MASTER_KEY_FILE: &str = "master.key";
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
pub const DP_TOKEN_FILE: &str = "dp.token";
pub const DATABASE_FILE: &str = "tollgate.db";
pub const URL_FILE: &str = "cp.url";

/// Operator tokens start with this, data-plane tokens with [`DP_TOKEN_PREFIX`],
/// so a leaked token is recognisable and the two are never confused.
pub const ADMIN_TOKEN_PREFIX: &str = "tgop-";
pub const DP_TOKEN_PREFIX: &str = "tgdp-";

#[derive(Debug, thiserror::Error)]
pub enum SecretsFileError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{origin}: the master key must be the base64 of exactly 32 bytes")]
    InvalidMasterKey { origin: String },
    #[error("{origin}: the token is empty")]
    EmptyToken { origin: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SecretsFileError + '_ {
    move |source| SecretsFileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates the data directory (0700 when we create it) if missing.
pub fn ensure_data_dir(dir: &Path) -> Result<(), SecretsFileError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    set_mode(dir, 0o700).map_err(io_err(dir))
}

/// The master key from its configured source, generating
/// `<data_dir>/master.key` on first start.
pub fn load_master_key(
    source: &MasterKeySource,
    data_dir: &Path,
) -> Result<MasterKey, SecretsFileError> {
    match source {
        MasterKeySource::Base64(text) => {
            MasterKey::from_base64(text).map_err(|_| SecretsFileError::InvalidMasterKey {
                origin: "TOLLGATE_MASTER_KEY".into(),
            })
        }
        MasterKeySource::File(path) => {
            let text = read_secret_file(path)?;
            MasterKey::from_base64(text.expose()).map_err(|_| SecretsFileError::InvalidMasterKey {
                origin: path.display().to_string(),
            })
        }
        MasterKeySource::DataDir => {
            let path = data_path(data_dir, MASTER_KEY_FILE);
            let text = load_or_create(&path, || {
                let mut bytes = [0u8; 32];
                OsRng.fill_bytes(&mut bytes);
                B64.encode(bytes)
            })?;
            MasterKey::from_base64(text.expose()).map_err(|_| SecretsFileError::InvalidMasterKey {
                origin: path.display().to_string(),
            })
        }
    }
}

/// A token from its override, else from `<data_dir>/<file>`, generated with
/// `prefix` on first start.
pub fn load_token(
    override_value: Option<&str>,
    data_dir: &Path,
    file: &str,
    prefix: &str,
) -> Result<SecretString, SecretsFileError> {
    let (token, origin) = match override_value {
        Some(v) => (SecretString::new(v.trim()), "token override".to_owned()),
        None => {
            let path = data_path(data_dir, file);
            let t = load_or_create(&path, || generate_token(prefix))?;
            (t, path.display().to_string())
        }
    };
    if token.is_empty() {
        return Err(SecretsFileError::EmptyToken { origin });
    }
    Ok(token)
}

/// `prefix` followed by 43 base62 characters (~256 bits).
pub fn generate_token(prefix: &str) -> String {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = String::with_capacity(prefix.len() + 43);
    out.push_str(prefix);
    let mut buf = [0u8; 1];
    while out.len() < prefix.len() + 43 {
        OsRng.fill_bytes(&mut buf);
        // Rejection sampling keeps the distribution uniform (248 = 4 * 62).
        if buf[0] < 248 {
            out.push(char::from(ALPHABET[usize::from(buf[0] % 62)]));
        }
    }
    out
}

/// Reads `path`, or creates it with `generate()` when it does not exist.
fn load_or_create(
    path: &Path,
    generate: impl FnOnce() -> String,
) -> Result<SecretString, SecretsFileError> {
    match read_secret_file(path) {
        Ok(v) => return Ok(v),
        Err(SecretsFileError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let value = generate();
    match create_private_file(path, value.as_bytes()) {
        Ok(()) => {
            tracing::info!(path = %path.display(), "generated secret file");
            Ok(SecretString::new(value))
        }
        // Another process won the race: use its value.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read_secret_file(path),
        Err(e) => Err(io_err(path)(e)),
    }
}

fn read_secret_file(path: &Path) -> Result<SecretString, SecretsFileError> {
    let text = fs::read_to_string(path).map_err(io_err(path))?;
    warn_if_readable_by_others(path);
    Ok(SecretString::new(text.trim()))
}

/// Writes `contents` to a new file at `path` with mode 0600, atomically:
/// fails with `AlreadyExists` if `path` exists, and never leaves a partial file.
pub fn create_private_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    let tmp = temp_sibling(path);
    let result = write_private(&tmp, contents).and_then(|()| fs::hard_link(&tmp, path));
    let _ = fs::remove_file(&tmp);
    result?;
    sync_parent(path);
    Ok(())
}

/// Replaces `path` with `contents` atomically (rename), for non-secret files
/// such as `cp.url`.
pub fn replace_file(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let tmp = temp_sibling(path);
    let result = write_new(&tmp, contents, mode).and_then(|()| fs::rename(&tmp, path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    sync_parent(path);
    Ok(())
}

fn temp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{:016x}", OsRng.next_u64()))
}

fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    write_new(path, contents, 0o600)
}

fn write_new(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    let mut f: File = opts.open(path)?;
    f.write_all(contents)?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    // The umask may have removed bits; set exactly what was asked.
    set_mode(path, mode)
}

fn sync_parent(path: &Path) {
    if let Some(parent) = path.parent() {
        if let Ok(dir) = File::open(parent) {
            let _ = dir.sync_all();
        }
    }
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> io::Result<()> {
    Ok(())
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "secret file is accessible by group or others; chmod 600 it");
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn tokens_are_generated_once_with_prefix_and_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_token(None, dir.path(), ADMIN_TOKEN_FILE, ADMIN_TOKEN_PREFIX).unwrap();
        assert!(a.expose().starts_with("tgop-"));
        assert_eq!(a.expose().len(), 5 + 43);
        let again = load_token(None, dir.path(), ADMIN_TOKEN_FILE, ADMIN_TOKEN_PREFIX).unwrap();
        assert_eq!(a, again);
        #[cfg(unix)]
        assert_eq!(mode(&dir.path().join(ADMIN_TOKEN_FILE)), 0o600);
        // No temp files left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec![ADMIN_TOKEN_FILE.to_owned()]);
    }

    #[test]
    fn override_is_used_and_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let t = load_token(
            Some("tgdp-fromenv"),
            dir.path(),
            DP_TOKEN_FILE,
            DP_TOKEN_PREFIX,
        )
        .unwrap();
        assert_eq!(t.expose(), "tgdp-fromenv");
        assert!(!dir.path().join(DP_TOKEN_FILE).exists());
        assert!(load_token(Some("  "), dir.path(), DP_TOKEN_FILE, DP_TOKEN_PREFIX).is_err());
    }

    #[test]
    fn master_key_generated_then_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let k1 = load_master_key(&MasterKeySource::DataDir, dir.path()).unwrap();
        let k2 = load_master_key(&MasterKeySource::DataDir, dir.path()).unwrap();
        assert_eq!(k1.fingerprint(), k2.fingerprint());
        let path = dir.path().join(MASTER_KEY_FILE);
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o600);
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(B64.decode(text.trim()).unwrap().len(), 32);
        let k3 = load_master_key(&MasterKeySource::File(path), dir.path()).unwrap();
        assert_eq!(k1.fingerprint(), k3.fingerprint());
    }

    #[test]
    fn invalid_master_key_is_rejected_without_echoing_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_master_key(&MasterKeySource::Base64("c2hvcnQ=".into()), dir.path())
            .err()
            .unwrap();
        let msg = err.to_string();
        assert!(msg.contains("32 bytes"));
        assert!(!msg.contains("c2hvcnQ="));
    }

    #[test]
    fn create_private_file_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        create_private_file(&p, b"one").unwrap();
        let e = create_private_file(&p, b"two").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read_to_string(&p).unwrap(), "one\n");
    }
}
