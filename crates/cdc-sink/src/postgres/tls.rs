//! TLS for PostgreSQL/TimescaleDB connections with rustls (the `ring` provider the workspace
//! already links), following libpq's `sslmode`:
//!
//! | mode | TLS | certificate chain | host name |
//! | --- | --- | --- | --- |
//! | `disable` | never | – | – |
//! | `prefer` | when the server offers it | not checked | not checked |
//! | `require` | always | checked only when `ca_file` is set | not checked |
//! | `verify-ca` | always | `ca_file`, else the public web roots | not checked |
//! | `verify-full` | always | `ca_file`, else the public web roots | checked |
//!
//! No channel binding is offered (SCRAM runs without `-PLUS`): the `tls-server-end-point` hash
//! depends on the certificate's signature algorithm, which this module does not parse.

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use cdc_config::{PgTlsConfig, TlsMode};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

use crate::error::Error;

/// The `sslmode` tokio-postgres negotiates for a mode (certificate checks are the connector's).
pub fn ssl_mode(mode: TlsMode) -> SslMode {
    match mode {
        TlsMode::Disable => SslMode::Disable,
        TlsMode::Prefer => SslMode::Prefer,
        TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => SslMode::Require,
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads the CA certificates of `path` (PEM). `key` names the setting in errors.
fn load_roots(path: &Path, key: &str) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path).map_err(|e| Error::Config {
        reason: format!("{key}: cannot read {}: {e}", path.display()),
    })?;
    for cert in certs {
        let cert = cert.map_err(|e| Error::Config {
            reason: format!(
                "{key}: {} is not a PEM certificate file: {e}",
                path.display()
            ),
        })?;
        roots.add(cert).map_err(|e| Error::Config {
            reason: format!(
                "{key}: a certificate in {} is unusable: {e}",
                path.display()
            ),
        })?;
    }
    if roots.is_empty() {
        return Err(Error::Config {
            reason: format!("{key}: {} holds no PEM certificate", path.display()),
        });
    }
    Ok(roots)
}

/// The rustls client configuration of a TLS setting; `key` is the config path named in errors
/// (e.g. `sinks.postgres.destination.tls`).
pub fn client_config(tls: &PgTlsConfig, key: &str) -> Result<Arc<ClientConfig>, Error> {
    let provider = provider();
    let roots = match &tls.ca_file {
        Some(path) => Some(load_roots(path, &format!("{key}.ca_file"))?),
        None if matches!(tls.mode, TlsMode::VerifyCa | TlsMode::VerifyFull) => {
            let mut r = RootCertStore::empty();
            r.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            Some(r)
        }
        None => None,
    };
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config {
            reason: format!("{key}: TLS setup: {e}"),
        })?;
    let verifier: Arc<dyn ServerCertVerifier> = match roots {
        None => Arc::new(AnyCertificate(provider)),
        Some(roots) => {
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| Error::Config {
                    reason: format!("{key}: TLS setup: {e}"),
                })?;
            if tls.mode == TlsMode::VerifyFull {
                webpki
            } else {
                Arc::new(AnyHostName(webpki))
            }
        }
    };
    Ok(Arc::new(
        builder
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth(),
    ))
}

/// `require` / `prefer` without a CA: encrypt, check the handshake signatures, trust any
/// certificate (libpq does the same).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca` (and `require` with a CA): the chain must lead to a trusted root; the name in
/// the certificate is not compared with the host.
#[derive(Debug)]
struct AnyHostName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// A tokio-postgres TLS connector over rustls.
#[derive(Clone)]
pub struct MakeRustlsConnect {
    config: Arc<ClientConfig>,
}

impl MakeRustlsConnect {
    /// The connector of a rustls client configuration (see [`client_config`]).
    pub fn new(config: Arc<ClientConfig>) -> Self {
        MakeRustlsConnect { config }
    }
}

impl<S> MakeTlsConnect<S> for MakeRustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, io::Error> {
        let name = ServerName::try_from(domain.to_owned()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("`{domain}` is not a host name or IP address TLS can check"),
            )
        })?;
        Ok(RustlsConnect {
            config: self.config.clone(),
            name,
        })
    }
}

/// Connects one socket (made by [`MakeRustlsConnect`]).
pub struct RustlsConnect {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<RustlsStream<S>, io::Error>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let connector = tokio_rustls::TlsConnector::from(self.config);
            let tls = connector.connect(self.name, stream).await?;
            Ok(RustlsStream(Box::new(tls)))
        })
    }
}

/// An established TLS stream.
pub struct RustlsStream<S>(Box<tokio_rustls::client::TlsStream<S>>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(self.0.as_mut()).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.0.as_mut()).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.0.as_mut()).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.0.as_mut()).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_map_to_negotiation() {
        assert!(matches!(ssl_mode(TlsMode::Disable), SslMode::Disable));
        assert!(matches!(ssl_mode(TlsMode::Prefer), SslMode::Prefer));
        for m in [TlsMode::Require, TlsMode::VerifyCa, TlsMode::VerifyFull] {
            assert!(matches!(ssl_mode(m), SslMode::Require));
        }
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_named() {
        let tls = PgTlsConfig {
            mode: TlsMode::VerifyFull,
            ca_file: Some("/nonexistent/cdc-test-ca.pem".into()),
        };
        let err = client_config(&tls, "sinks.postgres.destination.tls")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("sinks.postgres.destination.tls.ca_file")
                && err.contains("/nonexistent/cdc-test-ca.pem"),
            "{err}"
        );
        let dir = std::env::temp_dir().join(format!("cdc-tls-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap_or_else(|e| panic!("{e}"));
        let tls = PgTlsConfig {
            mode: TlsMode::Require,
            ca_file: Some(empty),
        };
        let err = client_config(&tls, "k.tls").err().map(|e| e.to_string());
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("k.tls.ca_file") && e.contains("no PEM")),
            "{err:?}"
        );
        // Without a CA file every mode builds (public roots for verify-*).
        for mode in [
            TlsMode::Prefer,
            TlsMode::Require,
            TlsMode::VerifyCa,
            TlsMode::VerifyFull,
        ] {
            assert!(client_config(&mode.into(), "k").is_ok());
        }
    }
}
