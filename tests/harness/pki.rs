//! A private CA for tests: server certificates for `localhost` /
//! `127.0.0.1` written as PEM files (what `--tls-cert`/`--tls-key` read),
//! and a TLS client that reports which certificate a server presented.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SerialNumber,
};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

/// A certificate authority that exists only for one test.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub pem: String,
    /// Where [`TestCa::new`] wrote `pem`.
    pub pem_path: PathBuf,
}

/// A server certificate and key issued by a [`TestCa`], as files.
pub struct TestCert {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// SHA-256 of the certificate's DER, hex (what the servers log).
    pub sha256: String,
}

impl TestCa {
    /// A new CA whose certificate is written to `dir/<name>.pem`.
    pub fn new(dir: &Path, name: &str) -> TestCa {
        std::fs::create_dir_all(dir).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let pem = issuer.pem();
        let pem_path = dir.join(format!("{name}.pem"));
        std::fs::write(&pem_path, &pem).unwrap();
        TestCa {
            issuer,
            pem,
            pem_path,
        }
    }

    /// The CA certificate, DER.
    pub fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// Issues a certificate for `localhost` and `127.0.0.1` with `serial`
    /// and writes it (and its key) to `dir/<name>.crt` and `.key`,
    /// replacing what is there.
    pub fn issue(&self, dir: &Path, name: &str, serial: u64) -> TestCert {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.serial_number = Some(SerialNumber::from(serial));
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let cert_path = dir.join(format!("{name}.crt"));
        let key_path = dir.join(format!("{name}.key"));
        // Key first: a reader that sees the new certificate with the old key
        // refuses the pair and keeps what it serves until both are new.
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        std::fs::write(&cert_path, cert.pem()).unwrap();
        TestCert {
            cert_path,
            key_path,
            sha256: hex(&Sha256::digest(cert.der())),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Opens a new TLS connection to `addr` (verifying it against `ca`, for
/// `localhost`) and returns the SHA-256 of the certificate presented.
pub async fn served_certificate(addr: SocketAddr, ca: &TestCa) -> anyhow::Result<String> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.der())?;
    let config = ClientConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await?;
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    let (_, conn) = tls.get_ref();
    let leaf = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or_else(|| anyhow::anyhow!("no certificate presented"))?;
    Ok(hex(&Sha256::digest(leaf.as_ref())))
}
