//! The policy's own tests: matching, wildcards and refused files.

use super::*;

const POLICY: &str = r#"
    [[identities]]
    name = "rustfs"
    unix_uid = 1000
    policies = ["storage-server"]

    [[identities]]
    name = "operator"
    spki_sha256 = "AB00000000000000000000000000000000000000000000000000000000000001"
    policies = ["key-admin"]

    [[identities]]
    name = "admin-api"
    access_key = "admin"
    policies = ["runtime"]

    [policies.storage-server]
    allow = ["GenerateDataKey", "Decrypt", "ReEncrypt"]
    keys = ["rustfs-*", "default"]
    deny_keys = ["rustfs-secret*"]

    [policies.key-admin]
    allow = ["keys:*", "data:*"]
    deny = ["Decrypt"]

    [policies.runtime]
    allow = ["admin:*"]
"#;

fn key(s: &str) -> Option<KeyId> {
    Some(KeyId::parse(s).unwrap())
}

#[test]
fn allow_deny_and_key_patterns() {
    let policy = Policy::from_toml(POLICY).unwrap();
    let rustfs = Identity::UnixPeer { uid: 1000, gid: 5 };
    let stranger = Identity::UnixPeer { uid: 1001, gid: 5 };
    let operator = Identity::Certificate {
        spki_sha256: "ab00000000000000000000000000000000000000000000000000000000000001".into(),
        name: None,
    };
    let admin = Identity::AdminKey("admin".into());
    let cases = [
        (&rustfs, Operation::GenerateDataKey, key("rustfs-a"), true),
        (&rustfs, Operation::GenerateDataKey, key("default"), true),
        (&rustfs, Operation::GenerateDataKey, key("other"), false),
        (
            &rustfs,
            Operation::GenerateDataKey,
            key("rustfs-secret1"),
            false,
        ),
        (&rustfs, Operation::Encrypt, key("rustfs-a"), false),
        (&rustfs, Operation::CreateKey, key("rustfs-a"), false),
        (&rustfs, Operation::Status, None, false),
        (&stranger, Operation::GenerateDataKey, key("default"), false),
        (&operator, Operation::CreateKey, key("anything"), true),
        (&operator, Operation::ListKeys, None, true),
        (&operator, Operation::Encrypt, key("x"), true),
        (&operator, Operation::Decrypt, key("x"), false),
        (&operator, Operation::Configure, None, false),
        (&admin, Operation::Reconfigure, None, true),
        (&admin, Operation::Decrypt, key("default"), false),
        (&Identity::Anonymous, Operation::Status, None, false),
        (&Identity::Internal, Operation::Decrypt, key("x"), true),
    ];
    for (caller, op, key_id, expected) in cases {
        assert_eq!(
            policy.allows(caller, op, key_id.as_ref()),
            expected,
            "{caller} {op:?} {key_id:?}"
        );
    }
    assert_eq!(policy.name_of(&rustfs), Some("rustfs"));
    assert!(Policy::allow_all().allows(&stranger, Operation::Configure, None));
    assert!(policy.allows_anything(&rustfs));
    assert!(!policy.allows_anything(&stranger));
    assert!(!policy.allows_anything(&Identity::Anonymous));
}

#[test]
fn without_a_file_only_authenticated_callers_are_served() {
    let unix = Identity::UnixPeer { uid: 7, gid: 7 };
    let strict = Policy::without_file(false);
    assert!(strict.allows(&unix, Operation::Decrypt, key("k").as_ref()));
    assert!(strict.allows(&Identity::AdminKey("a".into()), Operation::Configure, None));
    assert!(!strict.allows(
        &Identity::Anonymous,
        Operation::GenerateDataKey,
        key("k").as_ref()
    ));
    assert!(!strict.allows_anything(&Identity::Anonymous));
    let dev = Policy::without_file(true);
    assert!(dev.allows(
        &Identity::Anonymous,
        Operation::GenerateDataKey,
        key("k").as_ref()
    ));
}

#[test]
fn mistakes_are_refused() {
    for (text, needle) in [
        (
            "[policies.p]\nallow = [\"Frobnicate\"]",
            "unknown operation",
        ),
        (
            "[[identities]]\nname = \"x\"\npolicies = []",
            "exactly one kind",
        ),
        (
            "[[identities]]\nname = \"x\"\nunix_uid = 1\naccess_key = \"a\"",
            "exactly one kind",
        ),
        (
            "[[identities]]\nname = \"x\"\nunix_uid = 1\npolicies = [\"nope\"]",
            "unknown policy",
        ),
        (
            "[[identities]]\nname = \"x\"\nspki_sha256 = \"zz\"",
            "64 hex digits",
        ),
        ("[identity]\nname = \"x\"", "unknown field"),
    ] {
        let err = Policy::from_toml(text).unwrap_err();
        assert!(err.contains(needle), "{text}: {err}");
    }
}

proptest::proptest! {
    /// The fuzz target's oracle: without wildcards a pattern matches
    /// only itself; `*` matches everything; nothing panics.
    #[test]
    fn wildcard_properties(pattern in "[a-c*?-]{0,8}", text in "[a-c-]{0,8}") {
        let matched = wildcard_match(&pattern, &text);
        if !pattern.contains(['*', '?']) {
            proptest::prop_assert_eq!(matched, pattern == text);
        }
        proptest::prop_assert!(wildcard_match("*", &text));
        let suffix_pattern = format!("*{}", text);
        proptest::prop_assert!(wildcard_match(&suffix_pattern, &text));
    }

    #[test]
    fn policy_parsing_never_panics(text in "[\\[\\]a-z_.=\"*0-9\n ]{0,200}") {
        let _ = Policy::from_toml(&text);
    }
}

#[test]
fn wildcards() {
    for (pattern, text, expected) in [
        ("*", "", true),
        ("*", "abc", true),
        ("a*", "abc", true),
        ("a*c", "abc", true),
        ("a*c", "abd", false),
        ("a?c", "abc", true),
        ("a?c", "ac", false),
        ("rustfs-*", "rustfs-", true),
        ("*-prod", "db-prod", true),
        ("abc", "abcd", false),
    ] {
        assert_eq!(wildcard_match(pattern, text), expected, "{pattern} {text}");
    }
}
