//! The admin REST API from the outside: kmsd options that enable the admin
//! listener, a client that signs with the `aws-sigv4` crate (as the AWS
//! SDKs do, independent of kmsd's verifier), and the real `awscurl`.

use std::{
    path::PathBuf,
    process::{Command, Output},
    time::{Duration, SystemTime},
};

use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};

use crate::{KmsdOptions, free_port, workspace_root};

/// The prefix of every admin route.
pub const PREFIX: &str = "/rustfs/admin/v3";

/// The environment variable the test kmsd reads the admin secret from.
const SECRET_ENV: &str = "KMSD_TEST_ADMIN_SECRET";

/// `base` with the admin listener on a free loopback port and one access
/// key; backend configurations sent to the admin API may name files under
/// the instance's directory. Returns the options and the port.
pub fn with_admin(base: KmsdOptions, access_key: &str, secret: &str) -> (KmsdOptions, u16) {
    with_admin_rules(base, access_key, secret, "allowed_dirs = [\"{dir}\"]")
}

/// [`with_admin`] with `rules` as the other lines of `[admin]`.
pub fn with_admin_rules(
    mut base: KmsdOptions,
    access_key: &str,
    secret: &str,
    rules: &str,
) -> (KmsdOptions, u16) {
    let port = free_port();
    base.extra_toml.push_str(&format!(
        "\n[admin]\nlisten = \"127.0.0.1:{port}\"\n{rules}\n[[admin.access_keys]]\naccess_key = \"{access_key}\"\nsecret_key_env = \"{SECRET_ENV}\"\n"
    ));
    base.env.push((SECRET_ENV.into(), secret.into()));
    (base, port)
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The body as text.
    pub text: String,
    /// The body as JSON (`Null` if it is not JSON).
    pub json: serde_json::Value,
    /// The response headers.
    pub headers: http::HeaderMap,
}

impl Reply {
    /// The error body's `code`.
    pub fn code(&self) -> &str {
        self.json["code"].as_str().unwrap_or_default()
    }
}

/// A SigV4-signing client of one kmsd's admin API.
#[derive(Debug, Clone)]
pub struct AdminClient {
    port: u16,
    access_key: String,
    secret: String,
    region: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl AdminClient {
    /// A client for `127.0.0.1:<port>`.
    pub fn new(port: u16, access_key: &str, secret: &str) -> Self {
        Self {
            port,
            access_key: access_key.into(),
            secret: secret.into(),
            region: "us-east-1".into(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// The same server with other credentials.
    pub fn with_credentials(&self, access_key: &str, secret: &str) -> Self {
        Self {
            access_key: access_key.into(),
            secret: secret.into(),
            ..self.clone()
        }
    }

    /// The same server, signing for another region.
    pub fn with_region(&self, region: &str) -> Self {
        Self {
            region: region.into(),
            ..self.clone()
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// An unsigned request to `path` (the admin prefix is not added).
    pub fn unsigned(&self, method: &str, path: &str, body: &str) -> http::Request<Full<Bytes>> {
        http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base_url()))
            .header("host", format!("127.0.0.1:{}", self.port))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_owned())))
            .expect("a valid request")
    }

    /// A request to `PREFIX + path`, signed at `time` as the AWS SDK signs
    /// for S3 (x-amz-content-sha256 set and signed), plus `extra` headers
    /// (signed too).
    pub fn signed_at(
        &self,
        method: &str,
        path: &str,
        body: &str,
        time: SystemTime,
        extra: &[(&str, &str)],
    ) -> http::Request<Full<Bytes>> {
        let host = format!("127.0.0.1:{}", self.port);
        self.signed_for(&host, method, path, body, time, extra)
    }

    /// As [`Self::signed_at`], signed for (and sent with) `Host: host`
    /// whatever address it is sent to.
    pub fn signed_for(
        &self,
        host: &str,
        method: &str,
        path: &str,
        body: &str,
        time: SystemTime,
        extra: &[(&str, &str)],
    ) -> http::Request<Full<Bytes>> {
        let uri = format!("{}{PREFIX}{path}", self.base_url());
        let mut headers: Vec<(&str, &str)> =
            vec![("host", host), ("content-type", "application/json")];
        headers.extend_from_slice(extra);
        let identity = aws_credential_types::Credentials::new(
            &self.access_key,
            &self.secret,
            None,
            None,
            "test",
        )
        .into();
        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("s3")
            .time(time)
            .settings(settings)
            .build()
            .expect("complete signing params")
            .into();
        let signable = SignableRequest::new(
            method,
            uri.as_str(),
            headers.iter().copied(),
            SignableBody::Bytes(body.as_bytes()),
        )
        .expect("a signable request");
        let (instructions, _) = sign(signable, &params).expect("signing").into_parts();
        let mut request = http::Request::builder().method(method).uri(&uri);
        for (name, value) in &headers {
            request = request.header(*name, *value);
        }
        let mut request = request
            .body(Full::new(Bytes::from(body.to_owned())))
            .expect("a valid request");
        instructions.apply_to_request_http1x(&mut request);
        request
    }

    /// A request to `PREFIX + path`, signed now. Each carries a signed
    /// `x-amz-meta-request` header of its own: kmsd refuses a
    /// state-changing signature it has seen (replay protection), and two
    /// identical requests signed within one second would otherwise have
    /// the same signature.
    pub fn signed(&self, method: &str, path: &str, body: &str) -> http::Request<Full<Bytes>> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nonce = format!("{}-{n}", std::process::id());
        self.signed_at(
            method,
            path,
            body,
            SystemTime::now(),
            &[("x-amz-meta-request", &nonce)],
        )
    }

    /// Sends a request and reads the whole answer.
    pub async fn send(&self, request: http::Request<Full<Bytes>>) -> Reply {
        let response = tokio::time::timeout(Duration::from_secs(10), self.client.request(request))
            .await
            .expect("kmsd answers within 10 s")
            .expect("the request reaches kmsd");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("the body arrives")
            .to_bytes();
        let text = String::from_utf8_lossy(&body).into_owned();
        let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        Reply {
            status,
            text,
            json,
            headers,
        }
    }

    /// A signed GET of `PREFIX + path`.
    pub async fn get(&self, path: &str) -> Reply {
        self.send(self.signed("GET", path, "")).await
    }

    /// A signed POST of `body` to `PREFIX + path`.
    pub async fn post(&self, path: &str, body: &str) -> Reply {
        self.send(self.signed("POST", path, body)).await
    }

    /// A signed DELETE of `PREFIX + path` with `body`.
    pub async fn delete(&self, path: &str, body: &str) -> Reply {
        self.send(self.signed("DELETE", path, body)).await
    }
}

/// The awscurl installed by `scripts/setup-test-env.sh`. Missing is a
/// failure, never a skip: the seed's commands are part of the contract.
pub fn awscurl() -> PathBuf {
    let path = workspace_root().join(".venv/bin/awscurl");
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup-test-env.sh (it installs the pinned awscurl from scripts/requirements-test.txt)",
        path.display()
    );
    path
}

/// Runs awscurl with `args`, isolated from the user's AWS configuration.
pub fn run_awscurl(args: &[&str]) -> Output {
    let home = tempfile::tempdir().expect("a temporary HOME");
    Command::new(awscurl())
        .args(args)
        .env("HOME", home.path())
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_DEFAULT_REGION")
        .env_remove("AWS_REGION")
        .output()
        .expect("awscurl runs")
}
