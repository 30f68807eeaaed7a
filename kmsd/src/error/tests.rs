use super::*;

#[test]
fn internal_details_stay_out_of_the_status() {
    let status = Status::from(KmsError::Internal("/var/lib/kmsd/keys: EIO".into()));
    assert_eq!(status.code(), Code::Internal);
    assert!(!status.message().contains("/var/lib"));
    assert_eq!(status.get_details_error_info().unwrap().reason, "INTERNAL");
}

#[test]
fn reasons_travel_in_the_details() {
    let status = Status::from(KmsError::KeyNotFound(KeyId::parse("k").unwrap()));
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.message(), "key k not found");
    assert_eq!(
        status.get_details_error_info().unwrap().reason,
        "KEY_NOT_FOUND"
    );
}

/// One of every variant, in declaration order: [`kind_index`] makes a new
/// variant a compile error until it is listed here too.
fn every_kind() -> Vec<KmsError> {
    let k = || KeyId::parse("k").unwrap();
    vec![
        KmsError::InvalidKeyId {
            shown: "x".into(),
            reason: "r",
        },
        KmsError::ReservedKeyId(k()),
        KmsError::InvalidContext("c".into()),
        KmsError::InvalidArgument("a".into()),
        KmsError::MalformedBlob("b"),
        KmsError::InvalidCiphertext,
        KmsError::IncorrectKey {
            expected: k(),
            actual: k(),
        },
        KmsError::NoDefaultKey,
        KmsError::KeyNotFound(k()),
        KmsError::KeyVersionNotFound {
            key_id: k(),
            version: 2,
        },
        KmsError::KeyAlreadyExists(k()),
        KmsError::KeyDisabled(k()),
        KmsError::KeyPendingDeletion {
            key_id: k(),
            deletion_date: "d".into(),
        },
        KmsError::InvalidStateTransition {
            key_id: k(),
            state: "s",
            action: "a",
        },
        KmsError::KeyUnreadable(k()),
        KmsError::BackendUnavailable {
            backend: "vault",
            detail: "d".into(),
        },
        KmsError::BackendPermissionDenied {
            backend: "vault",
            detail: "d".into(),
        },
        KmsError::BackendNotConfigured("vault"),
        KmsError::InvalidConfig("c".into()),
        KmsError::BackendStartFailed("f".into()),
        KmsError::InvalidServiceState {
            state: "s",
            action: "a",
        },
        KmsError::NotRunning("Stopped"),
        KmsError::PermissionDenied,
        KmsError::Overloaded("o".into()),
        KmsError::AuditUnavailable("a".into()),
        KmsError::Internal("i".into()),
        KmsError::InvalidAliasName {
            shown: "x".into(),
            reason: "r",
        },
        KmsError::AliasNotFound(crate::alias::AliasName::parse("a").unwrap()),
        KmsError::AliasAlreadyExists(crate::alias::AliasName::parse("a").unwrap()),
        KmsError::ReloadFailed("r".into()),
        KmsError::ImportTokenNotFound,
        KmsError::ImportTokenExpired,
        KmsError::KeyStillReferenced {
            key_id: k(),
            last_used_at: "t".into(),
            window_secs: 1,
        },
    ]
}

/// The position of a variant in [`every_kind`]; exhaustive, so adding a
/// variant fails to compile here first.
fn kind_index(e: &KmsError) -> usize {
    match e {
        KmsError::InvalidKeyId { .. } => 0,
        KmsError::ReservedKeyId(_) => 1,
        KmsError::InvalidContext(_) => 2,
        KmsError::InvalidArgument(_) => 3,
        KmsError::MalformedBlob(_) => 4,
        KmsError::InvalidCiphertext => 5,
        KmsError::IncorrectKey { .. } => 6,
        KmsError::NoDefaultKey => 7,
        KmsError::KeyNotFound(_) => 8,
        KmsError::KeyVersionNotFound { .. } => 9,
        KmsError::KeyAlreadyExists(_) => 10,
        KmsError::KeyDisabled(_) => 11,
        KmsError::KeyPendingDeletion { .. } => 12,
        KmsError::InvalidStateTransition { .. } => 13,
        KmsError::KeyUnreadable(_) => 14,
        KmsError::BackendUnavailable { .. } => 15,
        KmsError::BackendPermissionDenied { .. } => 16,
        KmsError::BackendNotConfigured(_) => 17,
        KmsError::InvalidConfig(_) => 18,
        KmsError::BackendStartFailed(_) => 19,
        KmsError::InvalidServiceState { .. } => 20,
        KmsError::NotRunning(_) => 21,
        KmsError::PermissionDenied => 22,
        KmsError::Overloaded(_) => 23,
        KmsError::AuditUnavailable(_) => 24,
        KmsError::Internal(_) => 25,
        KmsError::InvalidAliasName { .. } => 26,
        KmsError::AliasNotFound(_) => 27,
        KmsError::AliasAlreadyExists(_) => 28,
        KmsError::ReloadFailed(_) => 29,
        KmsError::ImportTokenNotFound => 30,
        KmsError::ImportTokenExpired => 31,
        KmsError::KeyStillReferenced { .. } => 32,
    }
}

#[test]
fn every_kind_lists_every_variant_once() {
    let indices: Vec<usize> = every_kind().iter().map(kind_index).collect();
    assert_eq!(indices, (0..=32).collect::<Vec<_>>());
}

/// One of every variant with the HTTP status docs/admin-api.md
/// promises, and the gRPC code it sits beside.
#[test]
fn http_statuses_follow_the_grpc_codes() {
    let cases = every_kind().into_iter().map(|err| {
        let status = match kind_index(&err) {
            0..=6 | 18 | 26 => 400,
            8 | 9 | 27 | 30 => 404,
            7 | 10..=13 | 17 | 20 | 28 | 29 | 31 | 32 => 409,
            16 => 502,
            15 | 19 | 21 | 23 | 24 => 503,
            22 => 403,
            14 | 25 => 500,
            _ => unreachable!(),
        };
        (err, status)
    });
    for (err, status) in cases {
        assert_eq!(err.http_status().as_u16(), status, "{err:?}");
        let (code, _) = err.code_and_reason();
        let expected = match code {
            Code::InvalidArgument => 400,
            Code::NotFound => 404,
            Code::AlreadyExists => 409,
            Code::FailedPrecondition if status == 503 => 503,
            Code::FailedPrecondition => 409,
            Code::PermissionDenied if status == 502 => 502,
            Code::PermissionDenied => 403,
            Code::Unavailable | Code::ResourceExhausted => 503,
            Code::DataLoss | Code::Internal => 500,
            other => panic!("{err:?}: no HTTP status decided for {other:?}"),
        };
        assert_eq!(status, expected, "{err:?}");
        assert!(status >= 400, "an error is never 2xx");
    }
}

/// One row of the error table of docs/api.md.
#[derive(Debug)]
struct Row {
    code: String,
    reason: Option<String>,
    retried: bool,
}

fn api_error_table() -> Vec<Row> {
    let docs = include_str!("../../../docs/api.md");
    let section = docs
        .split("\n## Errors\n")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("docs/api.md has an Errors section");
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let unquote = |cell: &str| cell.trim_matches('`').to_owned();
            Row {
                code: unquote(cells[1]),
                reason: (cells[2] != "—").then(|| unquote(cells[2])),
                retried: match cells[3] {
                    "yes" => true,
                    "no" => false,
                    other => panic!("retried must be yes or no, not {other:?}: {line}"),
                },
            }
        })
        .collect()
}

/// docs/api.md's error table is the list of every (code, reason) kmsd
/// answers, and its "retried" column is what kms-client's `is_transient`
/// says: the two cannot drift apart.
#[test]
fn the_api_error_table_matches_the_code_and_the_clients_retries() {
    use std::collections::BTreeSet;

    let rows = api_error_table();
    let documented: BTreeSet<(String, String)> = rows
        .iter()
        .filter_map(|r| Some((r.code.clone(), r.reason.clone()?)))
        .collect();
    let answered: BTreeSet<(String, String)> = every_kind()
        .iter()
        .map(|e| {
            let (code, reason) = e.code_and_reason();
            (
                crate::metrics::code_name(code).to_owned(),
                reason.to_owned(),
            )
        })
        .collect();
    assert_eq!(
        documented, answered,
        "docs/api.md's error table and KmsError::code_and_reason differ"
    );
    // The reasons are kms-core's enum, which kms-client parses: each one
    // is answered, documented and named the same on both sides.
    let enumerated: BTreeSet<&str> = ErrorReason::ALL.iter().map(|r| r.as_str()).collect();
    let documented_reasons: BTreeSet<&str> = documented.iter().map(|(_, r)| r.as_str()).collect();
    assert_eq!(
        enumerated, documented_reasons,
        "docs/api.md's error table and kms_core::ErrorReason differ"
    );
    for error in every_kind() {
        let (_, reason) = error.code_and_reason_kind();
        assert_eq!(error.code_and_reason().1.parse(), Ok(reason));
    }

    let code_of = |name: &str| {
        (0..17)
            .map(Code::from_i32)
            .find(|c| crate::metrics::code_name(*c) == name)
            .unwrap_or_else(|| panic!("{name} is no gRPC code"))
    };
    for row in &rows {
        let error = kms_client::Error::Rpc {
            code: code_of(&row.code),
            reason: row.reason.clone(),
            message: String::new(),
        };
        assert_eq!(
            error.is_transient(),
            row.retried,
            "docs/api.md says {} / {:?} is {}retried",
            row.code,
            row.reason,
            if row.retried { "" } else { "not " }
        );
    }
    // Every code the client retries without a reason is in the table.
    for code in (0..17).map(Code::from_i32) {
        let bare = kms_client::Error::Rpc {
            code,
            reason: None,
            message: String::new(),
        };
        if bare.is_transient() {
            let name = crate::metrics::code_name(code);
            assert!(
                rows.iter()
                    .any(|r| r.code == name && r.reason.is_none() && r.retried),
                "kms-client retries {name}; docs/api.md's error table does not say so"
            );
        }
    }
}
