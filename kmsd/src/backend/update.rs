//! Changes of a key's metadata (description and tags) and the rules every
//! backend applies to them, so the two backends cannot disagree.

use std::collections::BTreeMap;

use super::KeyState;
use crate::{error::KmsError, key_id::KeyId};

/// Longest key description, in bytes.
pub const MAX_DESCRIPTION_LEN: usize = 1024;
/// Most tags on a key (AWS KMS's limit).
pub const MAX_TAGS: usize = 50;
/// Longest tag key, in characters (AWS KMS's limit).
pub const MAX_TAG_KEY_CHARS: usize = 128;
/// Longest tag value, in characters (AWS KMS's limit).
pub const MAX_TAG_VALUE_CHARS: usize = 256;
/// Tag-key prefixes kmsd refuses: AWS reserves `aws:`, and kmsd keeps
/// `kmsd:` for labels of its own, so no caller's tag can later collide
/// with one.
pub const RESERVED_TAG_PREFIXES: [&str; 2] = ["aws:", "kmsd:"];
/// The RustFS API names a key with its `name` tag at creation and does not
/// let it change afterwards; kmsd keeps that rule so RustFS tooling sees
/// the same key names.
pub const NAME_TAG: &str = "name";

/// A change of a key's description or tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataChange {
    /// Replace the description.
    Description(String),
    /// Add tags or replace their values.
    Tag(BTreeMap<String, String>),
    /// Remove tags (absent ones are ignored).
    Untag(Vec<String>),
}

impl MetadataChange {
    /// What the request itself must satisfy, before any key is read.
    pub fn validate(&self) -> Result<(), KmsError> {
        match self {
            MetadataChange::Description(description) => validate_description(description),
            MetadataChange::Tag(tags) => {
                if tags.is_empty() {
                    return Err(KmsError::InvalidArgument(
                        "tags is empty: give at least one tag".into(),
                    ));
                }
                validate_tags(tags)?;
                if tags.contains_key(NAME_TAG) {
                    return Err(name_tag_fixed());
                }
                Ok(())
            }
            MetadataChange::Untag(keys) => {
                if keys.is_empty() {
                    return Err(KmsError::InvalidArgument(
                        "tag_keys is empty: give at least one tag key".into(),
                    ));
                }
                if keys.len() > MAX_TAGS {
                    return Err(KmsError::InvalidArgument(format!(
                        "{} tag keys; a key has at most {MAX_TAGS} tags",
                        keys.len()
                    )));
                }
                for key in keys {
                    validate_tag_key(key)?;
                    if key == NAME_TAG {
                        return Err(name_tag_fixed());
                    }
                }
                Ok(())
            }
        }
    }

    /// The operation's name in messages.
    fn action(&self) -> &'static str {
        match self {
            MetadataChange::Description(_) => "update the description of",
            MetadataChange::Tag(_) => "tag",
            MetadataChange::Untag(_) => "untag",
        }
    }

    /// Applies the change to a key's description and tags; returns whether
    /// anything changed (an unchanged key is not written again, so a retry
    /// is a no-op). A key pending deletion is refused, as AWS KMS does.
    pub fn apply(
        &self,
        key_id: &KeyId,
        state: KeyState,
        description: &mut String,
        tags: &mut BTreeMap<String, String>,
    ) -> Result<bool, KmsError> {
        if state == KeyState::PendingDeletion {
            return Err(KmsError::InvalidStateTransition {
                key_id: key_id.clone(),
                state: state.as_str(),
                action: self.action(),
            });
        }
        match self {
            MetadataChange::Description(new) => {
                let changed = description != new;
                description.clone_from(new);
                Ok(changed)
            }
            MetadataChange::Tag(new) => {
                let mut merged = tags.clone();
                merged.extend(new.iter().map(|(k, v)| (k.clone(), v.clone())));
                if merged.len() > MAX_TAGS {
                    return Err(KmsError::InvalidArgument(format!(
                        "key {key_id} would have {} tags; at most {MAX_TAGS} are allowed (remove some with UntagKey first)",
                        merged.len()
                    )));
                }
                let changed = merged != *tags;
                *tags = merged;
                Ok(changed)
            }
            MetadataChange::Untag(keys) => {
                let before = tags.len();
                tags.retain(|k, _| !keys.contains(k));
                Ok(tags.len() != before)
            }
        }
    }
}

fn name_tag_fixed() -> KmsError {
    KmsError::InvalidArgument(format!(
        "the {NAME_TAG:?} tag names a key at creation (as in the RustFS API) and cannot be changed or removed"
    ))
}

/// A description's limit.
pub fn validate_description(description: &str) -> Result<(), KmsError> {
    if description.len() > MAX_DESCRIPTION_LEN {
        return Err(KmsError::InvalidArgument(format!(
            "description is {} bytes; at most {MAX_DESCRIPTION_LEN} are allowed",
            description.len()
        )));
    }
    Ok(())
}

/// AWS KMS's tag rules: at most 50 tags, keys of 1-128 characters, values
/// of at most 256, no reserved prefix.
pub fn validate_tags(tags: &BTreeMap<String, String>) -> Result<(), KmsError> {
    if tags.len() > MAX_TAGS {
        return Err(KmsError::InvalidArgument(format!(
            "{} tags; at most {MAX_TAGS} are allowed",
            tags.len()
        )));
    }
    for (key, value) in tags {
        validate_tag_key(key)?;
        let chars = value.chars().count();
        if chars > MAX_TAG_VALUE_CHARS {
            return Err(KmsError::InvalidArgument(format!(
                "the value of tag {:?} is {chars} characters; at most {MAX_TAG_VALUE_CHARS} are allowed",
                shown(key)
            )));
        }
    }
    Ok(())
}

fn validate_tag_key(key: &str) -> Result<(), KmsError> {
    let chars = key.chars().count();
    if chars == 0 || chars > MAX_TAG_KEY_CHARS {
        return Err(KmsError::InvalidArgument(format!(
            "tag key {:?} is {chars} characters; tag keys are 1-{MAX_TAG_KEY_CHARS} characters",
            shown(key)
        )));
    }
    if let Some(prefix) = RESERVED_TAG_PREFIXES.iter().find(|p| {
        key.get(..p.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(p))
    }) {
        return Err(KmsError::InvalidArgument(format!(
            "tag key {:?} starts with {prefix:?}, which is reserved",
            shown(key)
        )));
    }
    Ok(())
}

/// A short, printable echo of a caller's tag key.
fn shown(key: &str) -> String {
    let mut out: String = key
        .chars()
        .take(40)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if key.chars().count() > 40 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn aws_tag_rules() {
        let ok = tags(&[(&"k".repeat(128), &"v".repeat(256)), ("é", "")]);
        assert!(validate_tags(&ok).is_ok());
        for bad in [
            tags(&[("", "v")]),
            tags(&[(&"k".repeat(129), "v")]),
            tags(&[("k", &"v".repeat(257))]),
            tags(&[("aws:x", "v")]),
            tags(&[("AWS:x", "v")]),
            tags(&[("kmsd:x", "v")]),
        ] {
            assert!(
                matches!(validate_tags(&bad), Err(KmsError::InvalidArgument(_))),
                "{bad:?}"
            );
        }
        let many: BTreeMap<_, _> = (0..51).map(|i| (format!("t{i}"), String::new())).collect();
        assert!(validate_tags(&many).is_err());
        // Multi-byte characters count once, and never split a prefix test.
        assert!(validate_tags(&tags(&[(&"é".repeat(128), "")])).is_ok());
        assert!(validate_tags(&tags(&[("abcé", "")])).is_ok());
    }

    #[test]
    fn changes_apply_and_report_whether_anything_changed() {
        let id = KeyId::parse("k").unwrap();
        let (mut d, mut t) = (String::from("a"), tags(&[("x", "1")]));
        let tag = MetadataChange::Tag(tags(&[("y", "2")]));
        assert!(tag.apply(&id, KeyState::Enabled, &mut d, &mut t).unwrap());
        assert!(!tag.apply(&id, KeyState::Disabled, &mut d, &mut t).unwrap());
        let untag = MetadataChange::Untag(vec!["x".into(), "absent".into()]);
        assert!(untag.apply(&id, KeyState::Enabled, &mut d, &mut t).unwrap());
        assert_eq!(t, tags(&[("y", "2")]));
        let describe = MetadataChange::Description("b".into());
        assert!(
            describe
                .apply(&id, KeyState::Enabled, &mut d, &mut t)
                .unwrap()
        );
        assert_eq!(d, "b");
        assert!(matches!(
            describe.apply(&id, KeyState::PendingDeletion, &mut d, &mut t),
            Err(KmsError::InvalidStateTransition { .. })
        ));
        let mut full: BTreeMap<_, _> = (0..50).map(|i| (format!("t{i}"), String::new())).collect();
        assert!(matches!(
            MetadataChange::Tag(tags(&[("one-more", "")])).apply(
                &id,
                KeyState::Enabled,
                &mut d,
                &mut full
            ),
            Err(KmsError::InvalidArgument(_))
        ));
        for bad in [
            MetadataChange::Tag(BTreeMap::new()),
            MetadataChange::Untag(Vec::new()),
            MetadataChange::Tag(tags(&[("name", "x")])),
            MetadataChange::Untag(vec!["name".into()]),
            MetadataChange::Description("d".repeat(1025)),
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
