//! What tests set up on a running server: policies, tokens, AppRole, and
//! kmsd's view of it.

use serde_json::json;

use super::OpenBao;

impl OpenBao {
    /// A `[backend]` table for kmsd with an inline token.
    pub fn backend_toml(&self, token: &str, default_key_id: &str) -> String {
        format!(
            "[backend]\nbackend_type = \"vault\"\naddress = \"{}\"\ndefault_key_id = \"{default_key_id}\"\n[backend.auth_method]\ntoken = \"{token}\"\n",
            self.address()
        )
    }
    /// Writes an ACL policy.
    pub async fn write_policy(&self, name: &str, hcl: &str) {
        self.api(
            "PUT",
            &format!("sys/policies/acl/{name}"),
            Some(json!({ "policy": hcl })),
        )
        .await;
    }

    /// A token with only `policies` (not even `default`) and `ttl` (e.g.
    /// "1h").
    pub async fn create_token(&self, policies: &[&str], ttl: &str) -> String {
        let answer = self
            .api(
                "POST",
                "auth/token/create",
                Some(json!({ "policies": policies, "ttl": ttl, "no_default_policy": true })),
            )
            .await;
        answer["auth"]["client_token"].as_str().unwrap().to_owned()
    }

    /// Enables AppRole at `approle/` and creates `role`; returns its role
    /// id and a fresh secret id.
    pub async fn approle(
        &self,
        role: &str,
        policies: &[&str],
        token_ttl: &str,
        token_max_ttl: &str,
    ) -> (String, String) {
        let (status, _) = self
            .try_api("GET", "sys/auth/approle", None, Some(&self.root_token))
            .await;
        if status != 200 {
            self.api(
                "POST",
                "sys/auth/approle",
                Some(json!({ "type": "approle" })),
            )
            .await;
        }
        self.api(
            "POST",
            &format!("auth/approle/role/{role}"),
            Some(json!({
                "token_policies": policies,
                "token_ttl": token_ttl,
                "token_max_ttl": token_max_ttl,
            })),
        )
        .await;
        let role_id = self
            .api("GET", &format!("auth/approle/role/{role}/role-id"), None)
            .await["data"]["role_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let secret_id = self
            .api("POST", &format!("auth/approle/role/{role}/secret-id"), None)
            .await["data"]["secret_id"]
            .as_str()
            .unwrap()
            .to_owned();
        (role_id, secret_id)
    }

    /// Whether Transit still has `key`.
    pub async fn transit_key_exists(&self, key: &str) -> bool {
        let (status, _) = self
            .try_api(
                "GET",
                &format!("transit/keys/{key}"),
                None,
                Some(&self.root_token),
            )
            .await;
        status == 200
    }
}

/// The Vault policy of docs/vault.md (the block between its
/// `policy:begin` and `policy:end` markers), so tests run with exactly
/// what the documentation tells operators to grant.
pub fn documented_policy() -> String {
    const DOC: &str = include_str!("../../../docs/vault.md");
    let start = DOC
        .find("<!-- policy:begin -->")
        .expect("docs/vault.md has a policy:begin marker");
    let end = DOC
        .find("<!-- policy:end -->")
        .expect("docs/vault.md has a policy:end marker");
    let block = &DOC[start..end];
    let body_start = block.find("```hcl\n").expect("the policy is an hcl block") + "```hcl\n".len();
    let body_end = block[body_start..].find("```").expect("the hcl block ends") + body_start;
    block[body_start..body_end].to_owned()
}
