//! The audit line's JSON, written directly: the same bytes as
//! `serde_json::to_vec` of [`AuditEvent`] (the test below checks it over
//! random events), without serde's generic path, which was about a tenth
//! of the audit line's cost in a GenerateDataKey profile (issue 21).

use super::AuditEvent;

impl AuditEvent<'_> {
    /// Appends the event to `out` as one line of compact JSON, newline
    /// included. Fields are in declaration order; `None` and a false
    /// `offline` are left out, as the `serde` attributes say.
    pub fn encode_line(&self, out: &mut Vec<u8>) {
        let mut object = Object { out, first: true };
        object.string("time", &self.time);
        object.string("caller", &self.caller);
        object.string("operation", self.operation);
        object.optional("key_id", self.key_id);
        if let Some(version) = self.key_version {
            object.number("key_version", u64::from(version));
        }
        object.optional("destination_key_id", self.destination_key_id);
        object.optional("intermediate_key", self.intermediate_key);
        object.optional(
            "destination_intermediate_key",
            self.destination_intermediate_key,
        );
        object.optional("alias", self.alias.as_deref());
        object.optional("context_sha256", self.context_sha256.as_deref());
        if let Some(context) = self.context {
            object.key("context");
            let mut map = Object {
                out: object.out,
                first: true,
            };
            for (key, value) in context {
                map.escaped_key(key);
                escape(map.out, value);
            }
            map.close();
        }
        object.string("outcome", self.outcome);
        object.string("code", self.code);
        object.optional("reason", self.reason);
        if self.offline {
            object.key("offline");
            object.out.extend_from_slice(b"true");
        }
        object.number("duration_us", self.duration_us);
        object.close();
        out.push(b'\n');
    }
}

/// A JSON object being written.
struct Object<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl Object<'_> {
    /// A field name of ours: plain ASCII, written without escaping.
    fn key(&mut self, key: &str) {
        self.out.push(if self.first { b'{' } else { b',' });
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    /// A key of the caller's (an encryption context's), escaped.
    fn escaped_key(&mut self, key: &str) {
        self.out.push(if self.first { b'{' } else { b',' });
        self.first = false;
        escape(self.out, key);
        self.out.push(b':');
    }

    fn string(&mut self, key: &str, value: &str) {
        self.key(key);
        escape(self.out, value);
    }

    fn optional(&mut self, key: &str, value: Option<&str>) {
        if let Some(value) = value {
            self.string(key, value);
        }
    }

    fn number(&mut self, key: &str, value: u64) {
        self.key(key);
        // itoa, as serde_json does: core::fmt costs more than the rest of
        // the line.
        self.out
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    fn close(self) {
        if self.first {
            self.out.push(b'{');
        }
        self.out.push(b'}');
    }
}

/// `value` as a JSON string, escaped as serde_json does: `"`, `\` and the
/// control characters below 0x20 (short forms where JSON has them), and
/// nothing else.
fn escape(out: &mut Vec<u8>, value: &str) {
    out.push(b'"');
    let bytes = value.as_bytes();
    let mut start = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        let short = ESCAPE[usize::from(byte)];
        if short == 0 {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        out.push(b'\\');
        out.push(short);
        if short == b'u' {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"00");
            out.push(HEX[usize::from(byte >> 4)]);
            out.push(HEX[usize::from(byte & 0xf)]);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Per byte: 0 if it is written as is, else the letter after the
/// backslash (`u` for `\u00XX`).
const ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = b'u';
        byte += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn text() -> impl Strategy<Value = String> {
        // Every escape class, multi-byte characters and plain ASCII.
        prop_oneof![
            "[\\x00-\\x7f]{0,12}",
            "[\"\\\\\\x00-\\x1f\\x7f]{0,6}",
            "\\PC{0,8}",
        ]
    }

    fn encoded(event: &AuditEvent<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        event.encode_line(&mut out);
        out
    }

    proptest! {
        #[test]
        fn lines_are_what_serde_json_writes(
            time in text(), caller in text(), key_id in proptest::option::of(text()),
            key_version in proptest::option::of(any::<u32>()),
            destination in proptest::option::of(text()),
            intermediate in proptest::option::of(text()),
            alias in proptest::option::of(text()),
            digest in proptest::option::of(text()),
            context in proptest::option::of(proptest::collection::btree_map(text(), text(), 0..4)),
            reason in proptest::option::of(Just("KEY_DISABLED")),
            offline in any::<bool>(),
            duration_us in any::<u64>(),
        ) {
            let event = AuditEvent {
                time,
                caller,
                operation: "GenerateDataKey",
                key_id: key_id.as_deref(),
                key_version,
                destination_key_id: destination.as_deref(),
                intermediate_key: intermediate.as_deref(),
                destination_intermediate_key: destination.as_deref(),
                alias,
                context_sha256: digest,
                context: context.as_ref(),
                outcome: "error",
                code: "FAILED_PRECONDITION",
                reason,
                offline,
                duration_us,
            };
            let mut expected = serde_json::to_vec(&event).unwrap();
            expected.push(b'\n');
            prop_assert_eq!(encoded(&event), expected);
        }
    }

    #[test]
    fn an_empty_context_is_an_empty_object() {
        let context = BTreeMap::new();
        let event = AuditEvent {
            time: "t".into(),
            caller: "c".into(),
            operation: "Encrypt",
            key_id: None,
            key_version: None,
            destination_key_id: None,
            intermediate_key: None,
            destination_intermediate_key: None,
            alias: None,
            context_sha256: None,
            context: Some(&context),
            outcome: "ok",
            code: "OK",
            reason: None,
            offline: false,
            duration_us: 0,
        };
        assert_eq!(
            encoded(&event),
            b"{\"time\":\"t\",\"caller\":\"c\",\"operation\":\"Encrypt\",\"context\":{},\"outcome\":\"ok\",\"code\":\"OK\",\"duration_us\":0}\n"
        );
    }
}
