//! Key patterns of the form `alias/<pattern>` (docs/api.md, Aliases).

use super::*;

fn key(s: &str) -> Option<KeyId> {
    Some(KeyId::parse(s).unwrap())
}

#[test]
fn alias_patterns_match_requests_made_through_the_alias() {
    let policy = Policy::from_toml(
        r#"
        [[identities]]
        name = "app"
        unix_uid = 1000
        policies = ["app"]

        [policies.app]
        allow = ["GenerateDataKey"]
        keys = ["alias/app-*", "app-key"]
        deny_keys = ["alias/app-frozen"]
        "#,
    )
    .unwrap();
    let app = Identity::UnixPeer { uid: 1000, gid: 5 };
    let alias = |s: &str| AliasName::parse(s).unwrap();
    let gdk = Operation::GenerateDataKey;
    // Through a matching alias, whatever key it resolves to.
    assert!(policy.allows_via(&app, gdk, key("v2").as_ref(), Some(&alias("app-data"))));
    // The key id alone still decides without an alias.
    assert!(!policy.allows(&app, gdk, key("v2").as_ref()));
    assert!(policy.allows(&app, gdk, key("app-key").as_ref()));
    // Another alias does not help, and a denied alias denies.
    assert!(!policy.allows_via(&app, gdk, key("v2").as_ref(), Some(&alias("other"))));
    assert!(!policy.allows_via(
        &app,
        gdk,
        key("app-key").as_ref(),
        Some(&alias("app-frozen"))
    ));
}
