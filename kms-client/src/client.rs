//! A typed async client of kmsd over one shared HTTP/2 channel.

use std::time::Duration;

use hyper_util::rt::TokioIo;
use kms_proto::v1::{
    self as pb, admin_client::AdminClient, key_admin_client::KeyAdminClient,
    key_management_client::KeyManagementClient,
};
use tonic::transport::{Channel, Endpoint as TonicEndpoint};

use crate::{DataKey, EncryptionContext, Endpoint, Error, SecretBytes};

/// How to reach kmsd.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Where kmsd listens.
    pub endpoint: Endpoint,
    /// The deadline of each call, sent to kmsd as `grpc-timeout`.
    pub timeout: Duration,
    /// How long establishing the connection may take.
    pub connect_timeout: Duration,
}

impl ClientConfig {
    /// Defaults: 5 s per call, 2 s to connect.
    pub fn new(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
        }
    }
}

/// A cheap-to-clone handle on one connection to kmsd.
///
/// Clones share the underlying HTTP/2 channel, so create one per process and
/// clone it into every task.
#[derive(Debug, Clone)]
pub struct KmsClient {
    channel: Channel,
    data: KeyManagementClient<Channel>,
    keys: KeyAdminClient<Channel>,
    admin: AdminClient<Channel>,
}

/// A fresh data key: the plaintext to encrypt with, and the sealed blob to
/// store next to the ciphertext.
#[derive(Debug)]
pub struct GeneratedDataKey {
    /// The plaintext key; wiped on drop.
    pub key: DataKey,
    /// The sealed key (see docs/format.md); store it with the object.
    pub blob: Vec<u8>,
    /// The master key that sealed it.
    pub key_id: String,
    /// The version of that master key.
    pub key_version: u32,
}

/// A sealed blob and the key version that sealed it.
#[derive(Debug, Clone)]
pub struct SealedBlob {
    /// The blob; store it as-is.
    pub blob: Vec<u8>,
    /// The master key that sealed it.
    pub key_id: String,
    /// The version of that master key.
    pub key_version: u32,
}

/// The result of opening a blob.
#[derive(Debug)]
pub struct Decrypted {
    /// The plaintext; wiped on drop.
    pub plaintext: SecretBytes,
    /// The master key that had sealed it.
    pub key_id: String,
    /// The version of that master key.
    pub key_version: u32,
}

/// The result of re-encrypting a blob.
#[derive(Debug, Clone)]
pub struct ReEncrypted {
    /// The new blob.
    pub blob: SealedBlob,
    /// The key that had sealed the old blob.
    pub source_key_id: String,
    /// Its version.
    pub source_key_version: u32,
}

impl KmsClient {
    /// Connects with the default [`ClientConfig`].
    pub async fn connect(endpoint: Endpoint) -> Result<Self, Error> {
        Self::connect_with(ClientConfig::new(endpoint)).await
    }

    /// Connects now, so a wrong address fails here rather than on the first
    /// call.
    pub async fn connect_with(config: ClientConfig) -> Result<Self, Error> {
        let channel = channel(&config, false).await?;
        Ok(Self::from_channel(channel))
    }

    /// Returns at once; the connection is made on the first call and made
    /// again whenever it breaks.
    pub async fn connect_lazy(config: ClientConfig) -> Result<Self, Error> {
        let channel = channel(&config, true).await?;
        Ok(Self::from_channel(channel))
    }

    /// Wraps a channel built elsewhere (a custom transport or TLS setup).
    pub fn from_channel(channel: Channel) -> Self {
        Self {
            data: KeyManagementClient::new(channel.clone()),
            keys: KeyAdminClient::new(channel.clone()),
            admin: AdminClient::new(channel.clone()),
            channel,
        }
    }

    /// The shared channel, for other gRPC services kmsd serves (health,
    /// reflection).
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// The generated data-plane client, for calls this type does not wrap.
    pub fn key_management(&self) -> KeyManagementClient<Channel> {
        self.data.clone()
    }

    /// The generated key-admin client.
    pub fn key_admin(&self) -> KeyAdminClient<Channel> {
        self.keys.clone()
    }

    /// The generated runtime-admin client.
    pub fn admin(&self) -> AdminClient<Channel> {
        self.admin.clone()
    }

    /// A fresh 256-bit data key under `key_id` (`None`: kmsd's default key),
    /// bound to `context`.
    pub async fn generate_data_key(
        &self,
        key_id: Option<&str>,
        context: &EncryptionContext,
    ) -> Result<GeneratedDataKey, Error> {
        let response = self
            .data
            .clone()
            .generate_data_key(pb::GenerateDataKeyRequest {
                key_id: key_id.unwrap_or_default().to_owned(),
                encryption_context: context.clone(),
            })
            .await?
            .into_inner();
        let key = DataKey::take_from_vec(response.plaintext)
            .ok_or(Error::Protocol("the data key is not 32 bytes long"))?;
        Ok(GeneratedDataKey {
            key,
            blob: response.ciphertext_blob,
            key_id: response.key_id,
            key_version: response.key_version,
        })
    }

    /// A fresh data key, sealed only: for another party to open later.
    pub async fn generate_data_key_without_plaintext(
        &self,
        key_id: Option<&str>,
        context: &EncryptionContext,
    ) -> Result<SealedBlob, Error> {
        let response = self
            .data
            .clone()
            .generate_data_key_without_plaintext(pb::GenerateDataKeyRequest {
                key_id: key_id.unwrap_or_default().to_owned(),
                encryption_context: context.clone(),
            })
            .await?
            .into_inner();
        Ok(SealedBlob {
            blob: response.ciphertext_blob,
            key_id: response.key_id,
            key_version: response.key_version,
        })
    }

    /// Seals a small secret (at most 4096 bytes).
    pub async fn encrypt(
        &self,
        key_id: Option<&str>,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<SealedBlob, Error> {
        let response = self
            .data
            .clone()
            .encrypt(pb::EncryptRequest {
                key_id: key_id.unwrap_or_default().to_owned(),
                plaintext: plaintext.to_vec(),
                encryption_context: context.clone(),
            })
            .await?
            .into_inner();
        Ok(SealedBlob {
            blob: response.ciphertext_blob,
            key_id: response.key_id,
            key_version: response.key_version,
        })
    }

    /// Opens a blob. With `expected_key_id`, kmsd first checks that the blob
    /// was sealed under that key.
    pub async fn decrypt(
        &self,
        blob: &[u8],
        context: &EncryptionContext,
        expected_key_id: Option<&str>,
    ) -> Result<Decrypted, Error> {
        let response = self
            .data
            .clone()
            .decrypt(pb::DecryptRequest {
                ciphertext_blob: blob.to_vec(),
                encryption_context: context.clone(),
                expected_key_id: expected_key_id.unwrap_or_default().to_owned(),
            })
            .await?
            .into_inner();
        Ok(Decrypted {
            plaintext: SecretBytes::new(response.plaintext),
            key_id: response.key_id,
            key_version: response.key_version,
        })
    }

    /// Opens a data-key blob and returns the 32-byte key.
    pub async fn decrypt_data_key(
        &self,
        blob: &[u8],
        context: &EncryptionContext,
    ) -> Result<DataKey, Error> {
        let decrypted = self.decrypt(blob, context, None).await?;
        let bytes = decrypted.plaintext.expose_secret();
        let array = <[u8; 32]>::try_from(bytes)
            .map_err(|_| Error::Protocol("the blob does not hold a 32-byte data key"))?;
        Ok(DataKey::from_bytes(array))
    }

    /// Moves a blob to the newest version of its key (`destination_key_id`
    /// `None`) or to another key, and optionally to another context; the
    /// plaintext stays inside kmsd.
    pub async fn re_encrypt(
        &self,
        blob: &[u8],
        source_context: &EncryptionContext,
        destination_key_id: Option<&str>,
        destination_context: Option<&EncryptionContext>,
    ) -> Result<ReEncrypted, Error> {
        let response = self
            .data
            .clone()
            .re_encrypt(pb::ReEncryptRequest {
                ciphertext_blob: blob.to_vec(),
                source_encryption_context: source_context.clone(),
                expected_source_key_id: String::new(),
                destination_key_id: destination_key_id.unwrap_or_default().to_owned(),
                destination_encryption_context: destination_context.map(|entries| {
                    pb::EncryptionContext {
                        entries: entries.clone(),
                    }
                }),
            })
            .await?
            .into_inner();
        Ok(ReEncrypted {
            blob: SealedBlob {
                blob: response.ciphertext_blob,
                key_id: response.key_id,
                key_version: response.key_version,
            },
            source_key_id: response.source_key_id,
            source_key_version: response.source_key_version,
        })
    }
}

async fn channel(config: &ClientConfig, lazy: bool) -> Result<Channel, Error> {
    let connect_error = |source| Error::Connect {
        endpoint: config.endpoint.to_string(),
        source,
    };
    match &config.endpoint {
        Endpoint::Http(url) => {
            let endpoint = TonicEndpoint::from_shared(url.clone())
                .map_err(connect_error)?
                .timeout(config.timeout)
                .connect_timeout(config.connect_timeout)
                .tcp_nodelay(true);
            if lazy {
                Ok(endpoint.connect_lazy())
            } else {
                endpoint.connect().await.map_err(connect_error)
            }
        }
        Endpoint::Unix(path) => {
            // The URI is never dialled: the connector below opens the socket.
            // It only fills the :authority pseudo-header.
            let endpoint = TonicEndpoint::from_static("http://kmsd.local")
                .timeout(config.timeout)
                .connect_timeout(config.connect_timeout);
            let path = path.clone();
            let connector = tower::service_fn(move |_: http::Uri| {
                let path = path.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(path).await?;
                    Ok::<_, std::io::Error>(TokioIo::new(stream))
                }
            });
            if lazy {
                Ok(endpoint.connect_with_connector_lazy(connector))
            } else {
                endpoint
                    .connect_with_connector(connector)
                    .await
                    .map_err(connect_error)
            }
        }
    }
}
