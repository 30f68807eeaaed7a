//! Throwaway certificate authorities for TLS tests (rcgen, ring).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use time::OffsetDateTime;

/// A CA that can issue server and client certificates.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ca")
    }
}

/// A certificate and its key, PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// The private key.
    pub key_pem: String,
    /// Hex SHA-256 of the SubjectPublicKeyInfo: the identity kmsd sees.
    pub spki_sha256: String,
}

impl Ca {
    /// A new self-signed CA.
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self { issuer }
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> String {
        self.issuer.as_ref().pem()
    }

    fn issue(
        &self,
        names: Vec<String>,
        usage: ExtendedKeyUsagePurpose,
        not_after: Option<OffsetDateTime>,
    ) -> Issued {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names.clone()).unwrap();
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.extended_key_usages = vec![usage];
        params.not_before = OffsetDateTime::now_utc() - time::Duration::days(2);
        params.not_after =
            not_after.unwrap_or_else(|| OffsetDateTime::now_utc() + time::Duration::days(30));
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            spki_sha256: sha256_hex(&spki),
        }
    }

    /// A server certificate for `localhost` and 127.0.0.1.
    pub fn server(&self) -> Issued {
        self.issue(
            vec!["localhost".into(), "127.0.0.1".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
            None,
        )
    }

    /// A client certificate, optionally already expired.
    pub fn client(&self, name: &str, expired: bool) -> Issued {
        let not_after = expired.then(|| OffsetDateTime::now_utc() - time::Duration::days(1));
        self.issue(
            vec![name.into()],
            ExtendedKeyUsagePurpose::ClientAuth,
            not_after,
        )
    }
}

impl Issued {
    /// Writes `<name>.crt` and `<name>.key` into `dir`.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&cert, &self.cert_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        (cert, key)
    }
}

fn sha256_hex(data: &[u8]) -> String {
    use std::fmt::Write;
    let digest = ring_sha256(data);
    digest.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn ring_sha256(data: &[u8]) -> [u8; 32] {
    // A dependency-free SHA-256 would be silly; rcgen already links ring.
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// A client of kmsd's mutual-TLS listener on 127.0.0.1:`port`, trusting
/// `ca_pem` for the server (as `localhost`) and presenting `client`, if
/// any; it never retries, so a refused handshake shows at once.
pub async fn tls_client(
    port: u16,
    ca_pem: &str,
    client: Option<&Issued>,
) -> Result<kms_client::KmsClient, String> {
    use kms_client::{ClientConfig, ClientIdentity, KmsClient, SecretBytes, TlsSettings};
    let mut tls = TlsSettings::new(ca_pem.as_bytes().to_vec()).with_domain("localhost");
    if let Some(client) = client {
        tls = tls.with_identity(ClientIdentity::from_pem(
            client.cert_pem.clone().into_bytes(),
            SecretBytes::new(client.key_pem.clone().into_bytes()),
        ));
    }
    let endpoint = format!("https://127.0.0.1:{port}")
        .parse()
        .map_err(|e| format!("{e}"))?;
    let mut config = ClientConfig::new(endpoint);
    config.tls = Some(tls);
    config.retry = kms_client::RetryPolicy::NEVER;
    KmsClient::connect_with(config)
        .await
        .map_err(|e| e.to_string())
}
