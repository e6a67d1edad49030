//! TLS for the data plane (docs/tls.md, ADR 0018):
//!
//! - the proxy listener (`--tls-cert`/`--tls-key`): [`TlsApp`] wraps the
//!   proxy application and runs a rustls handshake on every new connection
//!   before the connection limits and Pingora's HTTP/1 server see it. The
//!   certificate comes from a [`ReloadingCert`], so replaced files are used
//!   by new connections without a restart.
//! - the control-plane channel (`--cp https://…`, `--cp-ca-file`): tonic's
//!   rustls client, verifying the control plane against the given CA or the
//!   public web PKI roots.
//!
//! Pingora's own `rustls` feature can serve TLS with a certificate resolver
//! too; this wrapper is used instead because it needs no further crates
//! (Pingora's pulls native root loading, a second x509 parser and a rebuild
//! of Pingora with TLS everywhere), shares its certificate code with the
//! control plane, bounds the handshake with a deadline and answers plain
//! HTTP on the TLS port with a readable error.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use pingora_core::apps::ServerApp;
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::tls::TlsRef;
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use pingora_core::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tollgate_tls::{ReloadingCert, ServerTlsSettings, TlsAcceptor};

use crate::http::errors::{ApiFormat, GatewayError};
use crate::server::BackgroundTask;

/// The proxy listener's TLS: the certificate in service and its acceptor.
pub struct DpTls {
    cert: Arc<ReloadingCert>,
    acceptor: TlsAcceptor,
    reload_interval: Duration,
}

impl std::fmt::Debug for DpTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpTls")
            .field("cert", &self.cert)
            .finish_non_exhaustive()
    }
}

impl DpTls {
    /// Loads the certificate and key; fails when they cannot be used.
    pub fn load(settings: &ServerTlsSettings) -> anyhow::Result<DpTls> {
        let cert = ReloadingCert::load(settings.files.clone())?;
        // HTTP/1.1 only: the connection limits (conn_guard) read HTTP/1
        // request heads, and Pingora is not set up for h2 here.
        let config = tollgate_tls::server_config(cert.clone(), &[tollgate_tls::ALPN_HTTP11])?;
        tracing::info!(
            cert = %settings.files.cert.display(),
            sha256 = %cert.fingerprint(),
            "TLS certificate loaded for the proxy listener"
        );
        Ok(DpTls {
            cert,
            acceptor: TlsAcceptor::from(config),
            reload_interval: settings.reload_interval,
        })
    }

    /// The background task that reloads the certificate files.
    pub fn reload_task(&self) -> BackgroundTask {
        let cert = self.cert.clone();
        let interval = self.reload_interval;
        Box::new(move |mut shutdown| {
            async move {
                cert.watch(interval, async move {
                    while !*shutdown.borrow() {
                        if shutdown.changed().await.is_err() {
                            break;
                        }
                    }
                })
                .await;
            }
            .boxed()
        })
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }
}

/// `endpoint` with TLS when the control-plane URL is `https://`: verified
/// against the CA certificates in `ca_file` when given, else the public web
/// PKI roots.
pub fn cp_endpoint_tls(
    endpoint: tonic::transport::Endpoint,
    ca_file: Option<&Path>,
) -> anyhow::Result<tonic::transport::Endpoint> {
    use anyhow::Context as _;
    let https = endpoint.uri().scheme_str() == Some("https");
    let ca = match ca_file {
        Some(path) => {
            anyhow::ensure!(
                https,
                "--cp-ca-file is set but the control-plane URL {} is not https://",
                endpoint.uri()
            );
            let pem = std::fs::read(path).with_context(|| {
                format!("cannot read the control-plane CA file {}", path.display())
            })?;
            anyhow::ensure!(
                pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----"),
                "{} holds no PEM certificate",
                path.display()
            );
            Some(pem)
        }
        None => None,
    };
    tollgate_proto::client::with_tls(endpoint, ca.as_deref()).map_err(|e| {
        anyhow::anyhow!(
            "control-plane TLS: {}",
            tollgate_proto::client::error_chain(&e)
        )
    })
}

/// A proxy application served over TLS when `tls` is set (else as it is).
pub struct TlsApp<A> {
    inner: Arc<A>,
    tls: Option<TlsAcceptor>,
}

impl<A> TlsApp<A> {
    pub fn new(inner: A, tls: Option<TlsAcceptor>) -> Self {
        TlsApp {
            inner: Arc::new(inner),
            tls,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for TlsApp<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let Some(acceptor) = &self.tls else {
            return self.inner.process_new(stream, shutdown).await;
        };
        // A kept-alive connection comes back wrapped by the layers inside;
        // only a freshly accepted socket needs a handshake.
        if !stream
            .as_any()
            .is::<pingora_core::protocols::l4::stream::Stream>()
        {
            return self.inner.process_new(stream, shutdown).await;
        }
        let handshake =
            tokio::time::timeout(tollgate_tls::HANDSHAKE_TIMEOUT, handshake(acceptor, stream))
                .await;
        let tls = match handshake {
            Ok(Ok(Some(tls))) => tls,
            Ok(Ok(None)) => return None,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                return None;
            }
            Err(_) => {
                tracing::debug!("TLS handshake timed out");
                return None;
            }
        };
        self.inner.process_new(Box::new(tls), shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await;
    }
}

/// `None` when the client spoke plain HTTP (answered 400 and closed) or
/// left before sending a byte.
async fn handshake(acceptor: &TlsAcceptor, mut stream: Stream) -> io::Result<Option<DpTlsStream>> {
    let mut first = [0u8; 1];
    match stream.try_peek(&mut first).await {
        Ok(true) => {}
        Ok(false) => return Err(io::Error::other("the socket cannot peek")),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    if !tollgate_tls::is_tls_handshake(first[0]) {
        tracing::info!("plain HTTP on the TLS listener: answered 400");
        let e = GatewayError::InvalidRequest {
            message: "This port speaks HTTPS: send the request to https:// instead of http://."
                .into(),
            param: None,
        };
        let answer = crate::http::conn_guard::refusal(&e, ApiFormat::OpenAi);
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let _ = stream.write_all(&answer).await;
            let _ = stream.flush().await;
        })
        .await;
        Shutdown::shutdown(stream.as_mut()).await;
        // Read what the client still sends, so closing does not reset the
        // connection before it read the answer.
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let mut scratch = [0u8; 4096];
            let mut left = 1usize << 20;
            while left > 0 {
                match tokio::io::AsyncReadExt::read(&mut stream, &mut scratch).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => left = left.saturating_sub(n),
                }
            }
        })
        .await;
        return Ok(None);
    }
    let inner = acceptor.accept(stream).await?;
    Ok(Some(DpTlsStream { inner }))
}

/// A client connection after the TLS handshake, as a Pingora stream.
pub struct DpTlsStream {
    inner: tollgate_tls::TlsStream<Stream>,
}

impl std::fmt::Debug for DpTlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpTlsStream")
            .field("tcp", self.tcp())
            .finish_non_exhaustive()
    }
}

impl DpTlsStream {
    fn tcp(&self) -> &Stream {
        self.inner.get_ref().0
    }
}

impl AsyncRead for DpTlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for DpTlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for DpTlsStream {
    async fn shutdown(&mut self) {
        // close_notify, then the socket.
        let _ = AsyncWriteExt::shutdown(&mut self.inner).await;
    }
}

impl UniqueID for DpTlsStream {
    fn id(&self) -> UniqueIDType {
        self.tcp().id()
    }
}

/// Pingora's TLS digest is for its own TLS backends; none is reported.
impl Ssl for DpTlsStream {
    fn get_ssl(&self) -> Option<&TlsRef> {
        None
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        None
    }
}

impl GetTimingDigest for DpTlsStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.tcp().get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.tcp().get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.tcp().get_write_pending_time()
    }
}

impl GetProxyDigest for DpTlsStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.tcp().get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.get_mut().0.set_proxy_digest(digest);
    }
}

impl GetSocketDigest for DpTlsStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.tcp().get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.get_mut().0.set_socket_digest(digest);
    }
}

/// Peeking below TLS would show ciphertext: not offered.
#[async_trait]
impl Peek for DpTlsStream {}
