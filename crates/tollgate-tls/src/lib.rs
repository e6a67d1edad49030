//! Server TLS shared by the control plane and the data plane: rustls with the
//! `ring` provider (the one the upstream client and tonic already use), a
//! certificate and key read from PEM files, and reloading of those files
//! without a restart.
//!
//! [`ReloadingCert`] is a rustls [`ResolvesServerCert`]: every handshake asks
//! it for the current certified key, so swapping the key (after the files
//! changed, checked every few seconds, or at once on SIGHUP) affects new
//! connections only; connections already open keep the certificate they
//! were set up with. Files that cannot be used (half written, key not
//! matching the certificate) are logged and ignored: the previous certificate
//! stays in service until a usable pair appears.

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

pub use rustls;
pub use tokio_rustls::server::TlsStream;
pub use tokio_rustls::TlsAcceptor;

/// How often certificate files are checked for changes by default.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// How long a client has to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// First byte of every TLS connection (a handshake record). A plain HTTP
/// request starts with a method name instead.
pub const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// ALPN for HTTP/2 and HTTP/1.1.
pub const ALPN_H2: &[u8] = b"h2";
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Whether a connection whose first byte is `first` is a TLS client.
pub fn is_tls_handshake(first: u8) -> bool {
    first == TLS_HANDSHAKE_RECORD
}

/// The certificate chain and private key files of a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    /// PEM: the server certificate first, then any intermediates.
    pub cert: PathBuf,
    /// PEM: PKCS#8, PKCS#1 (RSA) or SEC1 (EC) private key.
    pub key: PathBuf,
}

/// Server TLS settings: the files and how often to look for new ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsSettings {
    pub files: CertFiles,
    pub reload_interval: Duration,
}

impl ServerTlsSettings {
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        ServerTlsSettings {
            files: CertFiles {
                cert: cert.into(),
                key: key.into(),
            },
            reload_interval: DEFAULT_RELOAD_INTERVAL,
        }
    }
}

/// Why certificate files cannot be used. Never contains key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} holds no PEM certificate")]
    NoCertificate(PathBuf),
    #[error("{path} is not a valid PEM certificate chain: {reason}")]
    BadCertificate { path: PathBuf, reason: String },
    #[error("{0} holds no usable PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey(PathBuf),
    #[error("the key in {key} cannot be used with the certificate in {cert}: {reason}")]
    KeyMismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The crypto provider of every Tollgate TLS endpoint.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// SHA-256 of a certificate's DER, lower-case hex: what `openssl x509
/// -fingerprint -sha256` prints (without colons). Logged on every load so an
/// operator can tell which certificate is in service.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    hex::encode(Sha256::digest(cert.as_ref()))
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Parses a PEM certificate chain and key into a certified key, checking that
/// the key belongs to the first certificate.
pub fn certified_key(
    files: &CertFiles,
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadCertificate {
            path: files.cert.clone(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(files.cert.clone()));
    }
    let key =
        PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| TlsError::NoKey(files.key.clone()))?;
    CertifiedKey::from_der(chain, key, &rustls::crypto::ring::default_provider()).map_err(|e| {
        TlsError::KeyMismatch {
            cert: files.cert.clone(),
            key: files.key.clone(),
            reason: e.to_string(),
        }
    })
}

/// The certificate in service, swapped when its files change.
pub struct ReloadingCert {
    files: CertFiles,
    current: ArcSwap<CertifiedKey>,
    /// Digest of the file contents last looked at (used or refused), so an
    /// unchanged or already-refused pair is not parsed and logged again.
    seen: Mutex<[u8; 32]>,
}

impl fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("files", &self.files)
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

/// What a reload found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// The files are as last seen.
    Unchanged,
    /// A new certificate is in service; its fingerprint.
    Replaced(String),
}

fn contents_digest(cert: &[u8], key: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((cert.len() as u64).to_le_bytes());
    h.update(cert);
    h.update(key);
    h.finalize().into()
}

impl ReloadingCert {
    /// Loads the files; fails when they cannot be used.
    pub fn load(files: CertFiles) -> Result<Arc<ReloadingCert>, TlsError> {
        let cert_pem = read(&files.cert)?;
        let key_pem = read(&files.key)?;
        let key = certified_key(&files, &cert_pem, &key_pem)?;
        let loaded = ReloadingCert {
            seen: Mutex::new(contents_digest(&cert_pem, &key_pem)),
            current: ArcSwap::from_pointee(key),
            files,
        };
        Ok(Arc::new(loaded))
    }

    pub fn files(&self) -> &CertFiles {
        &self.files
    }

    /// Fingerprint of the certificate in service.
    pub fn fingerprint(&self) -> String {
        self.current
            .load()
            .end_entity_cert()
            .map(fingerprint)
            .unwrap_or_default()
    }

    /// Reads the files again; swaps the certificate when they changed and
    /// are usable. An error leaves the certificate in service as it is.
    pub fn reload(&self) -> Result<Reload, TlsError> {
        let cert_pem = read(&self.files.cert)?;
        let key_pem = read(&self.files.key)?;
        let digest = contents_digest(&cert_pem, &key_pem);
        {
            let mut seen = match self.seen.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            if *seen == digest {
                return Ok(Reload::Unchanged);
            }
            *seen = digest;
        }
        let key = certified_key(&self.files, &cert_pem, &key_pem)?;
        self.current.store(Arc::new(key));
        Ok(Reload::Replaced(self.fingerprint()))
    }

    /// Reloads every `interval`, and at once on SIGHUP, until `stop`
    /// completes. Logs each replacement and each refused pair once.
    pub async fn watch(self: Arc<Self>, interval: Duration, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        let mut hangup = hangup_signal();
        let mut tick = tokio::time::interval(interval.max(Duration::from_millis(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                () = &mut stop => return,
                _ = tick.tick() => {}
                () = next_hangup(&mut hangup) => {
                    tracing::info!("SIGHUP: reloading the TLS certificate");
                }
            }
            match self.reload() {
                Ok(Reload::Unchanged) => {}
                Ok(Reload::Replaced(fp)) => tracing::info!(
                    cert = %self.files.cert.display(),
                    sha256 = %fp,
                    "TLS certificate reloaded; new connections use it"
                ),
                Err(e) => tracing::warn!(
                    error = %e,
                    serving_sha256 = %self.fingerprint(),
                    "TLS certificate files changed but cannot be used; still serving the previous certificate"
                ),
            }
        }
    }
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = Option<()>;

#[cfg(unix)]
fn hangup_signal() -> Hangup {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::debug!(error = %e, "no SIGHUP handler; certificate files are polled only");
            None
        }
    }
}

#[cfg(not(unix))]
fn hangup_signal() -> Hangup {
    None
}

async fn next_hangup(h: &mut Hangup) {
    #[cfg(unix)]
    if let Some(s) = h {
        if s.recv().await.is_some() {
            return;
        }
    }
    let _ = h;
    std::future::pending::<()>().await;
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// A rustls server configuration that takes its certificate from `cert` at
/// every handshake, offering `alpn` in order of preference.
pub fn server_config(
    cert: Arc<ReloadingCert>,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair};

    fn write_pair(dir: &Path, name: &str) -> (CertFiles, String) {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let files = CertFiles {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
        };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        (files, fingerprint(cert.der()))
    }

    #[test]
    fn reload_swaps_only_for_a_new_usable_pair() {
        let dir = tempfile::tempdir().unwrap();
        let (files, first) = write_pair(dir.path(), "a.test");
        let cert = ReloadingCert::load(files.clone()).unwrap();
        assert_eq!(cert.fingerprint(), first);
        assert_eq!(cert.reload().unwrap(), Reload::Unchanged);

        // A half-finished rotation: new certificate, old key → refused, the
        // old certificate stays.
        let old_key = std::fs::read(&files.key).unwrap();
        let (_, second) = write_pair(dir.path(), "b.test");
        let new_key = std::fs::read(&files.key).unwrap();
        std::fs::write(&files.key, &old_key).unwrap();
        let err = cert.reload().unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
        assert_eq!(cert.fingerprint(), first);
        // The same refused pair is not reported again.
        assert_eq!(cert.reload().unwrap(), Reload::Unchanged);

        // The key arrives: the new certificate is in service.
        std::fs::write(&files.key, &new_key).unwrap();
        assert_eq!(cert.reload().unwrap(), Reload::Replaced(second.clone()));
        assert_eq!(cert.fingerprint(), second);
        assert_ne!(first, second);
    }

    #[test]
    fn unusable_files_are_clear_errors_without_key_material() {
        let dir = tempfile::tempdir().unwrap();
        let (files, _) = write_pair(dir.path(), "a.test");
        let missing = CertFiles {
            cert: dir.path().join("nope.crt"),
            key: files.key.clone(),
        };
        let e = ReloadingCert::load(missing).unwrap_err().to_string();
        assert!(e.contains("nope.crt"), "{e}");

        let key_pem = std::fs::read_to_string(&files.key).unwrap();
        let swapped = CertFiles {
            cert: files.key.clone(),
            key: files.cert.clone(),
        };
        let e = ReloadingCert::load(swapped).unwrap_err().to_string();
        assert!(e.contains("no PEM certificate"), "{e}");
        assert!(!e.contains(key_pem.lines().nth(1).unwrap()), "{e}");

        let e = ReloadingCert::load(CertFiles {
            cert: files.cert.clone(),
            key: files.cert.clone(),
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("no usable PEM private key"), "{e}");
    }

    #[test]
    fn tls_and_plain_http_are_told_apart_by_the_first_byte() {
        assert!(is_tls_handshake(0x16));
        for b in b"GET POST PRI" {
            assert!(!is_tls_handshake(*b));
        }
    }
}
