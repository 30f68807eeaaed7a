//! TLS to kmsd's TCP listener: the CA that signed kmsd's certificate and,
//! since kmsd requires mutual TLS, this client's own certificate and key.

use std::{fmt, path::Path, sync::Arc};

use crate::{Error, SecretBytes};

/// A client certificate and its private key (PEM). Clones share the key.
#[derive(Clone)]
pub struct ClientIdentity {
    cert_pem: Vec<u8>,
    key_pem: Arc<SecretBytes>,
}

impl ClientIdentity {
    /// From PEM bytes.
    pub fn from_pem(cert_pem: Vec<u8>, key_pem: SecretBytes) -> Self {
        Self {
            cert_pem,
            key_pem: Arc::new(key_pem),
        }
    }
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientIdentity { key: [secret elided] }")
    }
}

/// How to verify kmsd and how to present ourselves to it.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    ca_pem: Vec<u8>,
    identity: Option<ClientIdentity>,
    domain: Option<String>,
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, Error> {
    std::fs::read(path)
        .map_err(|e| Error::Tls(format!("cannot read the {what} {}: {e}", path.display())))
}

impl TlsSettings {
    /// Trusts the CAs in `ca_pem` for kmsd's certificate.
    pub fn new(ca_pem: Vec<u8>) -> Self {
        Self {
            ca_pem,
            identity: None,
            domain: None,
        }
    }

    /// Reads the CA bundle and, when given, the client certificate and key.
    pub fn from_files(
        ca: &Path,
        client_cert: Option<&Path>,
        client_key: Option<&Path>,
    ) -> Result<Self, Error> {
        let mut settings = Self::new(read(ca, "CA bundle")?);
        match (client_cert, client_key) {
            (Some(cert), Some(key)) => {
                settings.identity = Some(ClientIdentity::from_pem(
                    read(cert, "client certificate")?,
                    SecretBytes::new(read(key, "client key")?),
                ));
            }
            (None, None) => {}
            _ => {
                return Err(Error::Tls(
                    "a client certificate needs its key, and a key its certificate".into(),
                ));
            }
        }
        Ok(settings)
    }

    /// Presents `identity` to kmsd (kmsd requires it).
    pub fn with_identity(mut self, identity: ClientIdentity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// Verifies kmsd's certificate for `domain` instead of the endpoint's
    /// host.
    pub fn with_domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    pub(crate) fn tonic_config(&self) -> tonic::transport::ClientTlsConfig {
        let mut config = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&self.ca_pem));
        if let Some(identity) = &self.identity {
            config = config.identity(tonic::transport::Identity::from_pem(
                &identity.cert_pem,
                identity.key_pem.expose_secret(),
            ));
        }
        if let Some(domain) = &self.domain {
            config = config.domain_name(domain.clone());
        }
        config
    }
}
