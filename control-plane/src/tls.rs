//! TLS on the control plane's one port (gRPC admin and sync, gRPC-web, the
//! dashboard, `/status`, `/metrics`): rustls in front of the tonic server,
//! with the certificate reloaded from its files without a restart
//! (`tollgate_tls::ReloadingCert`, docs/tls.md).
//!
//! Connections are accepted here, each handshake runs in its own task under
//! a deadline (a slow or silent client never holds up the accept loop), and
//! finished TLS streams are handed to tonic as its incoming stream. A client
//! speaking plain HTTP to the port gets a short `400` telling it to use
//! `https://` instead of a TLS alert it cannot read.

use std::io;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tollgate_tls::{ReloadingCert, ServerTlsSettings, TlsAcceptor, TlsStream};

/// Finished handshakes waiting for tonic to pick them up.
const ACCEPTED_QUEUE: usize = 128;

const PLAINTEXT_REFUSAL: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: 63\r\nconnection: close\r\n\r\nThis port speaks TLS: use https:// to reach the control plane.\n";

/// The control plane's server TLS: the certificate in service and the
/// acceptor built around it.
#[derive(Clone)]
pub struct CpTls {
    cert: Arc<ReloadingCert>,
    acceptor: TlsAcceptor,
    settings: ServerTlsSettings,
}

impl std::fmt::Debug for CpTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpTls")
            .field("cert", &self.cert)
            .finish_non_exhaustive()
    }
}

impl CpTls {
    /// Loads the certificate and key; fails when they cannot be used.
    pub fn load(settings: &ServerTlsSettings) -> anyhow::Result<CpTls> {
        let cert = ReloadingCert::load(settings.files.clone())?;
        // gRPC clients (the data plane, the CLI) need HTTP/2 by ALPN; browsers
        // may take either.
        let config = tollgate_tls::server_config(
            cert.clone(),
            &[tollgate_tls::ALPN_H2, tollgate_tls::ALPN_HTTP11],
        )?;
        tracing::info!(
            cert = %settings.files.cert.display(),
            sha256 = %cert.fingerprint(),
            "TLS certificate loaded"
        );
        Ok(CpTls {
            cert,
            acceptor: TlsAcceptor::from(config),
            settings: settings.clone(),
        })
    }

    /// Watches the certificate files until shutdown.
    pub fn spawn_reloader(&self, mut shutdown: watch::Receiver<bool>) {
        let cert = self.cert.clone();
        let interval = self.settings.reload_interval;
        tokio::spawn(cert.watch(interval, async move {
            let _ = shutdown.wait_for(|s| *s).await;
        }));
    }

    /// TLS connections accepted on `listener`, until shutdown.
    pub fn incoming(
        &self,
        listener: TcpListener,
        mut shutdown: watch::Receiver<bool>,
    ) -> ReceiverStream<io::Result<TlsStream<TcpStream>>> {
        let (tx, rx) = mpsc::channel(ACCEPTED_QUEUE);
        let acceptor = self.acceptor.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = shutdown.wait_for(|s| *s) => return,
                    a = listener.accept() => a,
                };
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off
                        // instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let handshake = tokio::time::timeout(
                        tollgate_tls::HANDSHAKE_TIMEOUT,
                        handshake(&acceptor, tcp),
                    )
                    .await;
                    match handshake {
                        Ok(Ok(Some(tls))) => {
                            let _ = tx.send(Ok(tls)).await;
                        }
                        Ok(Ok(None)) => {}
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        ReceiverStream::new(rx)
    }
}

/// `None` when the client spoke plain HTTP (answered and closed) or left.
async fn handshake(
    acceptor: &TlsAcceptor,
    mut tcp: TcpStream,
) -> io::Result<Option<TlsStream<TcpStream>>> {
    let mut first = [0u8; 1];
    if tcp.peek(&mut first).await? == 0 {
        return Ok(None);
    }
    if !tollgate_tls::is_tls_handshake(first[0]) {
        tracing::debug!("plain HTTP on the TLS port: answered 400");
        tcp.write_all(PLAINTEXT_REFUSAL).await?;
        let _ = tcp.shutdown().await;
        // Read what the client still sends, so closing does not reset the
        // connection before it read the answer.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
            let mut scratch = [0u8; 4096];
            let mut left = 1usize << 20;
            while left > 0 {
                match tokio::io::AsyncReadExt::read(&mut tcp, &mut scratch).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => left = left.saturating_sub(n),
                }
            }
        })
        .await;
        return Ok(None);
    }
    acceptor.accept(tcp).await.map(Some)
}

/// The URL the control plane reports for a bound address.
pub fn url_for(addr: std::net::SocketAddr, tls: bool) -> String {
    if tls {
        format!("https://{addr}")
    } else {
        format!("http://{addr}")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_plaintext_refusal_states_its_length_truly() {
        let text = std::str::from_utf8(super::PLAINTEXT_REFUSAL).unwrap_or_default();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
        assert!(head.contains(&format!("content-length: {}", body.len())));
    }
}
