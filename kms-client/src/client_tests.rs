//! The client against an in-process fake kmsd on 127.0.0.1: retries happen
//! on transient errors only, and within the configured attempts.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use kms_proto::v1::{
    self as pb,
    key_management_server::{KeyManagement, KeyManagementServer},
};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Code, Request, Response, Status};

use crate::{ClientConfig, EncryptionContext, KmsClient, RetryPolicy};

/// Answers each call with the next scripted failure, then succeeds.
#[derive(Default)]
struct Fake {
    failures: Mutex<VecDeque<Code>>,
    calls: Mutex<u32>,
}

impl Fake {
    fn next(&self) -> Result<(), Status> {
        *self.calls.lock().unwrap() += 1;
        match self.failures.lock().unwrap().pop_front() {
            Some(code) => Err(Status::new(code, "scripted")),
            None => Ok(()),
        }
    }
}

/// What the server owns; the test keeps another handle to count calls.
struct Handle(Arc<Fake>);

#[tonic::async_trait]
impl KeyManagement for Handle {
    async fn generate_data_key(
        &self,
        _: Request<pb::GenerateDataKeyRequest>,
    ) -> Result<Response<pb::GenerateDataKeyResponse>, Status> {
        self.0.next()?;
        Ok(Response::new(pb::GenerateDataKeyResponse {
            plaintext: vec![9; 32],
            ciphertext_blob: b"blob".to_vec(),
            key_id: "default".into(),
            key_version: 1,
        }))
    }

    async fn generate_data_key_without_plaintext(
        &self,
        _: Request<pb::GenerateDataKeyRequest>,
    ) -> Result<Response<pb::GenerateDataKeyWithoutPlaintextResponse>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }

    async fn encrypt(
        &self,
        _: Request<pb::EncryptRequest>,
    ) -> Result<Response<pb::EncryptResponse>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }

    async fn decrypt(
        &self,
        _: Request<pb::DecryptRequest>,
    ) -> Result<Response<pb::DecryptResponse>, Status> {
        self.0.next()?;
        Ok(Response::new(pb::DecryptResponse {
            plaintext: vec![9; 32],
            key_id: "default".into(),
            key_version: 1,
        }))
    }

    async fn re_encrypt(
        &self,
        _: Request<pb::ReEncryptRequest>,
    ) -> Result<Response<pb::ReEncryptResponse>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }
}

async fn serve(failures: &[Code], max_attempts: u32) -> (KmsClient, Arc<Fake>) {
    let fake = Arc::new(Fake {
        failures: Mutex::new(failures.iter().copied().collect()),
        calls: Mutex::new(0),
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let service = KeyManagementServer::new(Handle(fake.clone()));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let mut config = ClientConfig::new(format!("http://{address}").parse().unwrap());
    config.retry = RetryPolicy {
        max_attempts,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
    };
    (KmsClient::connect_with(config).await.unwrap(), fake)
}

#[tokio::test]
async fn transient_failures_are_retried() {
    let (client, fake) = serve(&[Code::Unavailable, Code::DeadlineExceeded], 3).await;
    let key = client
        .generate_data_key(None, &EncryptionContext::new())
        .await
        .unwrap();
    assert_eq!(key.key.expose_secret(), &[9; 32]);
    assert_eq!(*fake.calls.lock().unwrap(), 3);
}

#[tokio::test]
async fn retries_stop_at_max_attempts() {
    let (client, fake) = serve(&[Code::Unavailable; 5], 2).await;
    let error = client
        .decrypt_data_key(b"blob", &EncryptionContext::new())
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(Code::Unavailable));
    assert_eq!(*fake.calls.lock().unwrap(), 2);
}

#[tokio::test]
async fn permanent_failures_are_not_retried() {
    let (client, fake) = serve(&[Code::InvalidArgument], 5).await;
    let error = client
        .decrypt_data_key(b"blob", &EncryptionContext::new())
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(Code::InvalidArgument));
    assert_eq!(*fake.calls.lock().unwrap(), 1);
}
