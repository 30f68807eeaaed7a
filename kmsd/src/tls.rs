//! TLS for the TCP listeners: mutual TLS for gRPC, and TLS (client
//! certificates optional) for the admin HTTP listener.
//!
//! With a client CA bundle, every client must present a certificate that
//! chains to it; its identity is the SHA-256 of the certificate's
//! SubjectPublicKeyInfo, so it survives re-issuing a certificate for the
//! same key (and names can be given to it in the policy file).
//!
//! The server certificate and the client CA bundle are reloaded on SIGHUP
//! and when the files change, without dropping connections: the rustls
//! config holds a certificate resolver and a client verifier that each read
//! their current value through an atomic pointer.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
    time::SystemTime,
};

use arc_swap::ArcSwap;
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
    client::danger::HandshakeSignatureValid,
    crypto::CryptoProvider,
    server::{
        ClientHello, ResolvesServerCert, WebPkiClientVerifier,
        danger::{ClientCertVerified, ClientCertVerifier},
    },
    sign::CertifiedKey,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime, pem::PemObject};

/// The files of the TLS configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The server certificate chain (PEM).
    pub cert_file: PathBuf,
    /// Its private key (PEM).
    pub key_file: PathBuf,
    /// The CAs client certificates must chain to (PEM); `None`: no client
    /// certificate is asked for (the admin listener, whose callers SigV4
    /// authenticates).
    pub client_ca_file: Option<PathBuf>,
}

/// Why the TLS configuration cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the material.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client verifier could not be built.
    #[error("client CA bundle: {0}")]
    Verifier(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn file_error(path: &Path, reason: impl fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

fn load_certified_key(settings: &TlsSettings) -> Result<CertifiedKey, TlsError> {
    let certs = CertificateDer::pem_file_iter(&settings.cert_file)
        .map_err(|e| file_error(&settings.cert_file, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(&settings.cert_file, e))?;
    if certs.is_empty() {
        return Err(file_error(
            &settings.cert_file,
            "no certificate in the file",
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&settings.key_file)
        .map_err(|e| file_error(&settings.key_file, format!("no usable private key: {e}")))?;
    Ok(CertifiedKey::from_der(certs, key, &provider())?)
}

fn load_verifier(path: &Path) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| file_error(path, e))? {
        roots
            .add(cert.map_err(|e| file_error(path, e))?)
            .map_err(|e| file_error(path, e))?;
    }
    if roots.is_empty() {
        return Err(file_error(path, "no CA certificate in the file"));
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))
}

#[derive(Debug)]
struct ReloadingCert(ArcSwap<CertifiedKey>);

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

struct ReloadingVerifier(ArcSwap<Arc<dyn ClientCertVerifier>>);

impl fmt::Debug for ReloadingVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReloadingVerifier")
    }
}

impl ClientCertVerifier for ReloadingVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    /// No hints: they would borrow from the current verifier, which may be
    /// swapped at any time. Clients of kmsd hold one certificate each, so
    /// they need no hint to choose it.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0
            .load()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.load().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.load().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.load().supported_verify_schemes()
    }
}

/// Certificate material read and checked by [`ReloadableTls::prepare`],
/// not yet in use.
pub struct PreparedTls {
    certified: CertifiedKey,
    verifier: Option<Arc<dyn ClientCertVerifier>>,
    mtime: Option<SystemTime>,
}

impl fmt::Debug for PreparedTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The private key is inside `certified`: never printed.
        f.write_str("PreparedTls")
    }
}

/// A rustls server configuration whose certificate and client CAs can be
/// reloaded in place.
#[derive(Debug)]
pub struct ReloadableTls {
    settings: TlsSettings,
    cert: Arc<ReloadingCert>,
    verifier: Option<Arc<ReloadingVerifier>>,
    config: Arc<ServerConfig>,
    loaded_at: std::sync::Mutex<Option<SystemTime>>,
}

/// ALPN of the gRPC listener: HTTP/2 only.
pub const ALPN_GRPC: &[&[u8]] = &[b"h2"];
/// ALPN of the admin HTTP listener: HTTP/2 and HTTP/1.1 (awscurl).
pub const ALPN_HTTP: &[&[u8]] = &[b"h2", b"http/1.1"];

impl ReloadableTls {
    /// Loads the files and builds the server configuration, offering the
    /// `alpn` protocols.
    pub fn load(settings: TlsSettings, alpn: &[&[u8]]) -> Result<Self, TlsError> {
        let cert = Arc::new(ReloadingCert(ArcSwap::from_pointee(load_certified_key(
            &settings,
        )?)));
        let verifier = settings
            .client_ca_file
            .as_deref()
            .map(|path| {
                load_verifier(path).map(|v| Arc::new(ReloadingVerifier(ArcSwap::from_pointee(v))))
            })
            .transpose()?;
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?;
        let builder = match &verifier {
            Some(verifier) => builder
                .with_client_cert_verifier(Arc::clone(verifier) as Arc<dyn ClientCertVerifier>),
            None => builder.with_no_client_auth(),
        };
        let mut config =
            builder.with_cert_resolver(Arc::clone(&cert) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let loaded_at = std::sync::Mutex::new(newest_mtime(&settings));
        Ok(Self {
            settings,
            cert,
            verifier,
            config: Arc::new(config),
            loaded_at,
        })
    }

    /// The configuration to accept connections with.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.config)
    }

    /// Reads and checks the files again without using them yet, so a
    /// reload can check everything before it changes anything.
    pub fn prepare(&self) -> Result<PreparedTls, TlsError> {
        let mtime = newest_mtime(&self.settings);
        let certified = load_certified_key(&self.settings)?;
        let verifier = match (&self.verifier, &self.settings.client_ca_file) {
            (Some(_), Some(path)) => Some(load_verifier(path)?),
            _ => None,
        };
        Ok(PreparedTls {
            certified,
            verifier,
            mtime,
        })
    }

    /// Serves new handshakes with `prepared`; connections already
    /// established keep theirs.
    pub fn install(&self, prepared: PreparedTls) {
        self.cert.0.store(Arc::new(prepared.certified));
        if let (Some(current), Some(verifier)) = (&self.verifier, prepared.verifier) {
            current.0.store(Arc::new(verifier));
        }
        if let Ok(mut loaded_at) = self.loaded_at.lock() {
            *loaded_at = prepared.mtime;
        }
        tracing::info!("TLS certificate and client CAs reloaded");
    }

    /// Reloads both files; on error the current material stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        self.install(self.prepare()?);
        Ok(())
    }

    /// Reloads if any file changed since the last load.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let current = newest_mtime(&self.settings);
        let changed = self
            .loaded_at
            .lock()
            .map(|loaded_at| current != *loaded_at)
            .unwrap_or(true);
        if changed {
            self.reload()?;
        }
        Ok(changed)
    }
}

fn newest_mtime(settings: &TlsSettings) -> Option<SystemTime> {
    [
        Some(&settings.cert_file),
        Some(&settings.key_file),
        settings.client_ca_file.as_ref(),
    ]
    .into_iter()
    .flatten()
    .filter_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
    .max()
}

/// The hex SHA-256 of a certificate's SubjectPublicKeyInfo: a client's
/// identity.
pub fn spki_sha256(cert: &CertificateDer<'_>) -> Option<String> {
    let parsed = webpki::EndEntityCert::try_from(cert).ok()?;
    Some(hex::encode(crate::crypto::sha256(
        parsed.subject_public_key_info().as_ref(),
    )))
}
