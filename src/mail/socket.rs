//! The connection under the SMTP client: TCP with Nagle's algorithm off, and TLS from the first byte for
//! `smtps://`. lettre's own connect leaves Nagle on, and it writes a message's end of data apart from its
//! body: that small write then waits for the ACK of the body, which the server's kernel delays (about
//! 40 ms on Linux). Measured with `bench/run --delivery`: 23 messages a second with lettre's connect, against
//! the sandbox's catcher on loopback (docs/reference.md, "Delivery").
//!
//! Owns the host's trust for mail: the same roots as lettre's (the system's store, `SSL_CERT_FILE`,
//! `SSL_CERT_DIR`); never trusts more.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use lettre::transport::smtp::client::AsyncTokioStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Why the connection could not be made.
pub(super) type Refused = String;

/// A TCP connection to `host:port` with Nagle's algorithm off, within `timeout`.
pub(super) async fn connect(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, Refused> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect((host, port)))
        .await
        .map_err(|_| format!("no connection within {timeout:?}"))?
        .map_err(|e| format!("cannot connect: {e}"))?;
    stream.set_nodelay(true).map_err(|e| format!("cannot connect: {e}"))?;
    Ok(stream)
}

/// The roots a mail server's certificate must chain to, read once.
fn roots() -> Arc<rustls::RootCertStore> {
    static ROOTS: OnceLock<Arc<rustls::RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut store = rustls::RootCertStore::empty();
            store.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            Arc::new(store)
        })
        .clone()
}

/// TLS over `stream` to `host`, its certificate checked against the host's roots.
pub(super) async fn secure(stream: TcpStream, host: &str, timeout: Duration) -> Result<Secured, Refused> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots())
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from(host.to_owned()).map_err(|e| format!("TLS: {e}"))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tls = tokio::time::timeout(timeout, connector.connect(name, stream))
        .await
        .map_err(|_| format!("no TLS handshake within {timeout:?}"))?
        .map_err(|e| match crate::api::refused_certificate(&e) {
            Some(why) => format!("TLS: {}", trust_hint(why)),
            None => format!("TLS: {e}"),
        })?;
    Ok(Secured(tls))
}

/// A TLS stream lettre can speak SMTP over.
#[derive(Debug)]
pub(super) struct Secured(tokio_rustls::client::TlsStream<TcpStream>);

impl AsyncRead for Secured {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Secured {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for Secured {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

/// A refused certificate, and the way out.
pub(super) fn trust_hint(why: String) -> String {
    format!("{why}; name the CA with SSL_CERT_FILE or SSL_CERT_DIR, or add it to the system's trust store")
}
