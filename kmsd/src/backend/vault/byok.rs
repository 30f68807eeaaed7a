//! Transit's "bring your own key" import: how material a caller imported
//! into kmsd (already unwrapped, see `crate::import`) becomes a Transit
//! key that never leaves Vault again.
//!
//! Transit takes material wrapped for its own wrapping key
//! (`<mount>/wrapping_key`, RSA-4096): an ephemeral AES-256 key encrypted
//! with RSA-OAEP-SHA256, followed by the material wrapped under that AES
//! key with AES key wrap with padding (RFC 5649). kmsd makes that blob
//! itself, so callers see one wrapping scheme whatever the backend, and
//! POSTs it to `<mount>/keys/<name>/import`.

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use rsa::{Oaep, RsaPublicKey, pkcs8::DecodePublicKey};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::{error::VaultError, request::VaultRequest, transit::Transit};
use crate::{crypto, key_id::KeyId};

#[derive(Deserialize)]
struct WrappingKeyData {
    public_key: String,
}

#[derive(Serialize)]
struct ImportBody {
    ciphertext: String,
    #[serde(rename = "type")]
    key_type: &'static str,
    hash_function: &'static str,
    exportable: bool,
    allow_plaintext_backup: bool,
    /// kmsd's RotateKey adds Transit-generated versions to imported keys
    /// as to any other (docs/admin-api.md, "Import").
    allow_rotation: bool,
    derived: bool,
}

/// Imports `material` as version 1 of a new Transit key `key_id` of type
/// `aes256-gcm96`, neither exportable nor derived. Not repeated on a lost
/// answer: a second import of an existing key fails.
pub(crate) async fn import(
    transit: &Transit,
    key_id: &KeyId,
    material: &[u8; crypto::KEY_LEN],
) -> Result<(), VaultError> {
    let op = format!("GET {}/wrapping_key", transit.mount());
    let req = VaultRequest::get(format!("{}/wrapping_key", transit.mount()));
    let wrapping: WrappingKeyData = transit.client().call_data(&req).await?;
    let public = RsaPublicKey::from_public_key_pem(&wrapping.public_key).map_err(|e| {
        VaultError::Decode {
            op: op.clone(),
            reason: format!("the wrapping key is not an RSA public key: {e}"),
        }
    })?;
    let ciphertext = wrap_for_transit(&public, material).map_err(|reason| VaultError::Decode {
        op: op.clone(),
        reason,
    })?;
    let body = ImportBody {
        ciphertext: B64.encode(ciphertext),
        key_type: super::transit::KEY_TYPE,
        hash_function: "SHA256",
        exportable: false,
        allow_plaintext_backup: false,
        allow_rotation: true,
        derived: false,
    };
    let mut req = VaultRequest::post_json(
        format!("{}/keys/{key_id}/import", transit.mount()),
        &body,
        false,
    )?;
    // It creates a key: neither repeated nor hedged.
    req.idempotent = false;
    req.hedge = false;
    transit.client().call(&req).await.map(drop)
}

/// Transit's import blob: RSA-OAEP-SHA256(ephemeral AES key) || AES-KWP.
fn wrap_for_transit(
    public: &RsaPublicKey,
    material: &[u8; crypto::KEY_LEN],
) -> Result<Vec<u8>, String> {
    let ephemeral =
        Zeroizing::new(crypto::random_array::<{ crypto::KEY_LEN }>().map_err(|e| e.to_string())?);
    let mut out = public
        .encrypt(
            &mut rsa::rand_core::OsRng,
            Oaep::new::<Sha256>(),
            &*ephemeral,
        )
        .map_err(|e| format!("cannot wrap for Transit: {e}"))?;
    let kek = aes_kw::KekAes256::from(*ephemeral);
    let wrapped = kek
        .wrap_with_padding_vec(material)
        .map_err(|e| format!("cannot wrap for Transit: {e}"))?;
    out.extend_from_slice(&wrapped);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use rsa::RsaPrivateKey;

    use super::*;

    #[test]
    fn the_blob_opens_as_transit_opens_it() {
        let private = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        let public = RsaPublicKey::from(&private);
        let material = [5u8; crypto::KEY_LEN];
        let blob = wrap_for_transit(&public, &material).unwrap();
        let (head, tail) = blob.split_at(256);
        let ephemeral = private.decrypt(Oaep::new::<Sha256>(), head).unwrap();
        let ephemeral: [u8; 32] = ephemeral.try_into().unwrap();
        let opened = aes_kw::KekAes256::from(ephemeral)
            .unwrap_with_padding_vec(tail)
            .unwrap();
        assert_eq!(opened, material);
    }
}
