//! The wire form of one Vault call: the request (built from a vaultrs
//! endpoint, or by hand for the few endpoints vaultrs lacks) and how an
//! answer is read (its `data`, or the error its status and body mean).
//! The bottom layer of the backend: it imports only the error type.

use reqwest::{Method, StatusCode};
use rustify::endpoint::Endpoint;
use serde::{Serialize, de::DeserializeOwned};
use zeroize::Zeroizing;

use super::error::VaultError;

/// One request to Vault.
pub(crate) struct VaultRequest {
    /// The method (`LIST` included).
    pub(crate) method: Method,
    /// Relative to `/v1/`, without a leading slash.
    pub(crate) path: String,
    /// The query string, if any.
    pub(crate) query: Option<String>,
    /// The JSON body. Zeroizing: for Transit it holds a plaintext.
    pub(crate) body: Option<Zeroizing<Vec<u8>>>,
    /// Whether sending it twice has the same effect as once.
    pub(crate) idempotent: bool,
    /// A Transit `batch_input` call: a 400 that carries per-item results
    /// (some items failed) is an answer, not an error.
    pub(crate) batch: bool,
    /// A Transit crypto call (data key, encrypt, decrypt) or a read: it
    /// changes nothing and read-enabled standbys answer it themselves, so
    /// it may be hedged to the next node (`hedge_after_ms`).
    pub(crate) hedge: bool,
}

impl VaultRequest {
    /// `METHOD path`, the name of the operation in errors and logs.
    pub(crate) fn op(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

impl std::fmt::Debug for VaultRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The body may hold a plaintext or a secret id.
        f.debug_struct("VaultRequest")
            .field("op", &self.op())
            .field("body_len", &self.body.as_ref().map(|b| b.len()))
            .finish_non_exhaustive()
    }
}

impl VaultRequest {
    /// A JSON `POST` of `body` to `path`, for the Transit calls vaultrs
    /// has no endpoint for (`associated_data`, `batch_input`): they
    /// change nothing in Vault, so they are idempotent and may be hedged.
    pub(crate) fn post_json(
        path: String,
        body: &impl Serialize,
        batch: bool,
    ) -> Result<Self, VaultError> {
        let bytes = serde_json::to_vec(body).map_err(|e| VaultError::Decode {
            op: format!("POST {path}"),
            reason: e.to_string(),
        })?;
        Ok(Self {
            method: Method::POST,
            path,
            query: None,
            body: Some(Zeroizing::new(bytes)),
            idempotent: true,
            batch,
            hedge: true,
        })
    }

    /// A `GET` of `path` that vaultrs has no endpoint for.
    pub(crate) fn get(path: String) -> Self {
        Self {
            method: Method::GET,
            path,
            query: None,
            body: None,
            idempotent: true,
            batch: false,
            hedge: false,
        }
    }
}

/// Turns a vaultrs endpoint into a request.
pub(crate) fn request<E: Endpoint>(
    endpoint: &E,
    idempotent: bool,
) -> Result<VaultRequest, VaultError> {
    let path = endpoint.path();
    // Some vaultrs paths start with '/' (or, for renew-self, a tab); the
    // transport wants them relative to /v1/.
    let path = path.trim().trim_start_matches('/').to_owned();
    let bad = |reason: String| VaultError::Decode {
        op: path.clone(),
        reason,
    };
    let query = endpoint
        .query()
        .map_err(|e| bad(format!("cannot encode the query: {e}")))?;
    let body = endpoint
        .body()
        .map_err(|e| bad(format!("cannot encode the body: {e}")))?
        .filter(|b| !b.is_empty())
        .map(Zeroizing::new);
    let method: Method = endpoint.method().into();
    Ok(VaultRequest {
        // A read (key metadata above all) changes nothing, and standbys
        // answer it themselves: it may be hedged like Transit crypto.
        hedge: method == Method::GET,
        method,
        path,
        query,
        body,
        idempotent,
        batch: false,
    })
}

/// A vaultrs Transit crypto endpoint turned into a request that may be
/// hedged: it changes nothing in Vault, and read-enabled standbys answer
/// it themselves.
pub(crate) fn hedged<E: Endpoint>(endpoint: &E) -> Result<VaultRequest, VaultError> {
    let mut req = request(endpoint, true)?;
    req.hedge = true;
    Ok(req)
}

#[derive(serde::Deserialize)]
struct Envelope<T> {
    data: Option<T>,
}

/// The `data` of a Vault answer.
pub(crate) fn data<T: DeserializeOwned>(op: &str, body: &[u8]) -> Result<T, VaultError> {
    serde_json::from_slice::<Envelope<T>>(body)
        .map_err(|e| VaultError::Decode {
            op: op.to_owned(),
            reason: e.to_string(),
        })?
        .data
        .ok_or_else(|| VaultError::Decode {
            op: op.to_owned(),
            reason: "the answer has no data".into(),
        })
}

#[derive(serde::Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<String>,
}

pub(crate) fn has_batch_results(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .is_some_and(|v| v.get("data").and_then(|d| d.get("batch_results")).is_some())
}

pub(crate) fn status_error(status: StatusCode, body: &[u8], op: String) -> VaultError {
    let errors = serde_json::from_slice::<ErrorBody>(body)
        .map(|b| b.errors)
        .unwrap_or_default();
    let mut message = errors
        .iter()
        .map(|e| e.trim().replace("\n\t", " ").replace('\n', " "))
        .collect::<Vec<_>>()
        .join("; ");
    if message.len() > 300 {
        let mut end = 300;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
    }
    match status.as_u16() {
        400 => VaultError::BadRequest { op, message },
        403 => VaultError::Denied { op },
        // A missing object answers 404 with no error text; a path no
        // engine is mounted at names the missing route.
        404 => VaultError::NotFound {
            op,
            routed: errors.is_empty(),
        },
        // Sealed, by its own word (`sys/health` of a sealed node says
        // `"sealed":true`): certainly not processed. Another 503 (a proxy
        // in front, say) is only a server error.
        503 if String::from_utf8_lossy(body)
            .to_ascii_lowercase()
            .contains("sealed") =>
        {
            VaultError::Sealed { op }
        }
        status => VaultError::Status {
            status,
            op,
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vaultrs_decrypt_sends_only_what_was_set() {
        let decrypt = vaultrs::api::transit::requests::DecryptDataRequest {
            mount: "transit".into(),
            name: "k1".into(),
            ciphertext: "vault:v1:AAAA".into(),
            associated_data: Some("YWFk".into()),
            ..Default::default()
        };
        let req = hedged(&decrypt).unwrap();
        assert_eq!(req.op(), "POST transit/decrypt/k1");
        assert!(req.hedge && req.idempotent && !req.batch);
        let body: serde_json::Value = serde_json::from_slice(&req.body.unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"ciphertext": "vault:v1:AAAA", "associated_data": "YWFk"})
        );
    }

    #[test]
    fn vaultrs_paths_become_relative() {
        let renew = vaultrs::api::token::requests::RenewTokenSelfRequest {
            increment: Some("60s".into()),
        };
        let req = request(&renew, true).unwrap();
        assert_eq!(req.path, "auth/token/renew-self");
        assert_eq!(req.method, reqwest::Method::POST);
        let body = req.body.unwrap();
        assert_eq!(&body[..], br#"{"increment":"60s"}"#);
        let list = vaultrs::api::kv2::requests::ListSecretsRequest {
            mount: "secret".into(),
            path: "a/b".into(),
        };
        let req = request(&list, true).unwrap();
        assert_eq!(req.op(), "LIST secret/metadata/a/b");
        assert!(req.body.is_none());
    }
}
