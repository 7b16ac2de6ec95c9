//! TLS to a reader on TCP (vipa-protocol.md §0: optional on the TCP transport). rustls with
//! the ring provider; the reader's certificate must chain to a certificate of the PEM file the
//! address names (`tls://HOST[:PORT]?ca=FILE`): readers carry device or site certificates, not
//! public web ones, so no system or web roots are trusted. Where the reader (or the site's
//! TLS front) asks for the bridge's certificate, `&cert=FILE&key=FILE` names it.

use std::io;
use std::sync::Arc;

use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

/// The files of the bridge's TLS client certificate: its chain and its private key, both
/// PEM. Only the paths are held (and shown); the key is read when the link opens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientCert {
    /// Certificate chain, leaf first.
    pub cert: String,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: String,
}

/// The client configuration trusting the certificates in `ca_pem`, presenting `client`'s
/// certificate when given.
///
/// # Errors
/// An unreadable file, no certificate in it, or a certificate or key rustls refuses. Errors
/// name the file, never its contents.
pub fn client_config(ca_pem: &str, client: Option<&ClientCert>) -> io::Result<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_pem)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{ca_pem}: {e}")))?
    {
        let cert =
            cert.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{ca_pem}: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{ca_pem}: {e}")))?;
    }
    if roots.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{ca_pem}: no certificate"),
        ));
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_root_certificates(roots);
    let Some(client) = client else {
        return Ok(builder.with_no_client_auth());
    };
    let bad = |file: &str, e: &dyn std::fmt::Display| {
        io::Error::new(io::ErrorKind::InvalidData, format!("{file}: {e}"))
    };
    let chain = CertificateDer::pem_file_iter(&client.cert)
        .map_err(|e| bad(&client.cert, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(&client.cert, &e))?;
    if chain.is_empty() {
        return Err(bad(&client.cert, &"no certificate"));
    }
    // The key's own error text could quote key material: only the file is named.
    let key = PrivateKeyDer::from_pem_file(&client.key).map_err(|_| {
        bad(
            &client.key,
            &"no usable private key (PEM: PKCS#8, PKCS#1 or SEC1)",
        )
    })?;
    builder
        .with_client_auth_cert(chain, key)
        .map_err(|e| bad(&client.cert, &e))
}

/// Connects to `host:port` and runs the TLS handshake, the server named `host`.
///
/// # Errors
/// Connection, configuration or handshake failures (a certificate that does not verify is
/// `InvalidData`).
pub async fn connect(
    host: &str,
    port: u16,
    ca_pem: &str,
    client: Option<&ClientCert>,
) -> io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let config = client_config(ca_pem, client).map_err(|e| {
        tracing::error!(error = %e, "tls configuration for the reader link unusable");
        e
    })?;
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let tcp = tokio::net::TcpStream::connect((host, port)).await?;
    tcp.set_nodelay(true)?;
    let tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "tls handshake with the reader failed");
            e
        })?;
    Ok(tls)
}
