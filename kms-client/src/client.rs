//! A typed async client of kmsd over one shared HTTP/2 channel.

use std::{future::Future, time::Duration};

use hyper_util::rt::TokioIo;
use kms_proto::v1::{
    self as pb, admin_client::AdminClient, key_admin_client::KeyAdminClient,
    key_management_client::KeyManagementClient,
};
use tonic::transport::{Channel, Endpoint as TonicEndpoint};

use crate::{DataKey, EncryptionContext, Endpoint, Error, RetryPolicy, SecretBytes, TlsSettings};

/// How to reach kmsd.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Where kmsd listens.
    pub endpoint: Endpoint,
    /// The deadline of each call, sent to kmsd as `grpc-timeout`.
    pub timeout: Duration,
    /// How long establishing the connection may take.
    pub connect_timeout: Duration,
    /// How data-plane calls are retried on transient errors (each attempt
    /// has its own `timeout`). Admin calls are never retried.
    pub retry: RetryPolicy,
    /// TLS for an `https://` endpoint (required there, ignored elsewhere).
    pub tls: Option<TlsSettings>,
}

impl ClientConfig {
    /// Defaults: 5 s per call, 2 s to connect, [`RetryPolicy::default`].
    pub fn new(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            retry: RetryPolicy::default(),
            tls: None,
        }
    }
}

/// A cheap-to-clone handle on one connection to kmsd.
///
/// Clones share the underlying HTTP/2 channel, so create one per process and
/// clone it into every task.
///
/// The data-plane methods below retry transient failures under the
/// configured [`RetryPolicy`]; they are safe to repeat. The generated
/// clients ([`key_admin`](Self::key_admin), [`admin`](Self::admin)) are
/// handed out as they are and never retry: CreateKey or RotateKey may have
/// taken effect even when the reply was lost.
#[derive(Debug, Clone)]
pub struct KmsClient {
    retry: RetryPolicy,
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
        Ok(Self::from_channel(channel, config.retry))
    }

    /// Returns at once; the connection is made on the first call and made
    /// again whenever it breaks.
    pub async fn connect_lazy(config: ClientConfig) -> Result<Self, Error> {
        let channel = channel(&config, true).await?;
        Ok(Self::from_channel(channel, config.retry))
    }

    /// Wraps a channel built elsewhere (a custom transport or TLS setup),
    /// retrying data-plane calls per `retry`.
    pub fn from_channel(channel: Channel, retry: RetryPolicy) -> Self {
        Self {
            retry,
            data: KeyManagementClient::new(channel.clone()),
            keys: KeyAdminClient::new(channel.clone()),
            admin: AdminClient::new(channel.clone()),
            channel,
        }
    }

    /// One data-plane call, retried on transient errors. The request is
    /// cloned per attempt (a few hundred bytes at most).
    async fn call<Req, Resp, F, Fut>(&self, request: Req, rpc: F) -> Result<Resp, Error>
    where
        Req: Clone,
        F: Fn(KeyManagementClient<Channel>, Req) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        self.retry
            .run(|| {
                let attempt = rpc(self.data.clone(), request.clone());
                async move { Ok(attempt.await?.into_inner()) }
            })
            .await
    }

    /// The retry policy of the data-plane calls.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
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
        let request = pb::GenerateDataKeyRequest {
            key_id: key_id.unwrap_or_default().to_owned(),
            encryption_context: context.clone(),
        };
        let response = self
            .call(request, |mut client, request| async move {
                client.generate_data_key(request).await
            })
            .await?;
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
        let request = pb::GenerateDataKeyRequest {
            key_id: key_id.unwrap_or_default().to_owned(),
            encryption_context: context.clone(),
        };
        let response = self
            .call(request, |mut client, request| async move {
                client.generate_data_key_without_plaintext(request).await
            })
            .await?;
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
        let request = pb::EncryptRequest {
            key_id: key_id.unwrap_or_default().to_owned(),
            plaintext: plaintext.to_vec(),
            encryption_context: context.clone(),
        };
        let response = self
            .call(request, |mut client, request| async move {
                client.encrypt(request).await
            })
            .await?;
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
        let request = pb::DecryptRequest {
            ciphertext_blob: blob.to_vec(),
            encryption_context: context.clone(),
            expected_key_id: expected_key_id.unwrap_or_default().to_owned(),
        };
        let response = self
            .call(request, |mut client, request| async move {
                client.decrypt(request).await
            })
            .await?;
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
        let request = pb::ReEncryptRequest {
            ciphertext_blob: blob.to_vec(),
            source_encryption_context: source_context.clone(),
            expected_source_key_id: String::new(),
            destination_key_id: destination_key_id.unwrap_or_default().to_owned(),
            destination_encryption_context: destination_context.map(|entries| {
                pb::EncryptionContext {
                    entries: entries.clone(),
                }
            }),
        };
        let response = self
            .call(request, |mut client, request| async move {
                client.re_encrypt(request).await
            })
            .await?;
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
        Endpoint::Http(url) | Endpoint::Https(url) => {
            let mut endpoint = TonicEndpoint::from_shared(url.clone())
                .map_err(connect_error)?
                .timeout(config.timeout)
                .connect_timeout(config.connect_timeout)
                .tcp_nodelay(true);
            if matches!(config.endpoint, Endpoint::Https(_)) {
                let tls = config.tls.as_ref().ok_or_else(|| Error::InvalidEndpoint {
                    endpoint: url.clone(),
                    reason: "an https endpoint needs TLS settings (the CA that signed kmsd's certificate)",
                })?;
                endpoint = endpoint
                    .tls_config(tls.tonic_config())
                    .map_err(|e| Error::Tls(e.to_string()))?;
            }
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
