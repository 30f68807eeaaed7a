//! Parser messages without values: a misplaced secret (a token pasted into
//! the wrong field, a string left unterminated) must not come back in an
//! error, on the terminal, in a log or in an admin-API answer.
//!
//! serde quotes offending string values (`invalid type: string "…"`) and
//! names unknown enum values in backquotes (`unknown variant `…``); toml
//! also prints the source line. Field names (`unknown field `x``) stay:
//! they are the caller's keys, which say where the mistake is.

/// Elides every double-quoted value and every backquoted unknown variant
/// of a serde message. Backquoted text is kept otherwise (field names,
/// expected tokens such as `` `"` ``).
pub fn redact_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let (mut in_quotes, mut in_backquotes, mut elide_backquoted) = (false, false, false);
    for c in message.chars() {
        match c {
            '"' if !in_backquotes => {
                if in_quotes {
                    out.push('"');
                } else {
                    out.push_str("\"…");
                }
                in_quotes = !in_quotes;
            }
            '`' if !in_quotes => {
                if !in_backquotes {
                    elide_backquoted = out.ends_with("variant ");
                    out.push('`');
                    if elide_backquoted {
                        out.push('…');
                    }
                } else {
                    out.push('`');
                }
                in_backquotes = !in_backquotes;
            }
            _ if in_quotes || (in_backquotes && elide_backquoted) => {}
            c => out.push(c),
        }
    }
    out
}

/// A serde_json error message with every value elided.
pub fn redact_json_error(error: &serde_json::Error) -> String {
    redact_message(&error.to_string())
}

/// A TOML error as "line L, column C: message", without the source line
/// toml's `Display` prints and with every value elided.
pub fn redact_toml_error(error: &toml::de::Error, source: &str) -> String {
    let message = redact_message(error.message());
    match error.span() {
        Some(span) => {
            let before = source.get(..span.start).unwrap_or(source);
            let line = before.matches('\n').count() + 1;
            let column = before
                .rsplit_once('\n')
                .map_or(before, |(_, last)| last)
                .chars()
                .count()
                + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Backend {
        token: Option<String>,
        secret_id: Option<String>,
        timeout_seconds: Option<u64>,
        kind: Option<Kind>,
    }

    #[derive(Debug, serde::Deserialize)]
    enum Kind {
        Local,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct File {
        backend: Backend,
    }

    const SECRET: &str = "s.SECRET-token-0123";

    #[test]
    fn no_toml_error_shape_shows_the_value() {
        for text in [
            "[backend]\ntoken = \"s.SECRET-token-0123\n",
            "[backend]\ntoken = \"s.SECRET-token-0123\"\ntoken = \"s.SECRET-token-0123\"\n",
            "[backend]\ntoken = \"s.SECRET-token-0123\" x\n",
            "[backend]\ntimeout_seconds = \"s.SECRET-token-0123\"\n",
            "[backend]\nsecret_id = 's.SECRET-token-0123\n",
            "[backend]\nsecret_id = \"\"\"s.SECRET-token-0123\n",
            "[backend]\ntimeout_seconds = s.SECRET-token-0123\n",
            "[backend]\nkind = \"s.SECRET-token-0123\"\n",
        ] {
            let err = toml::from_str::<File>(text).unwrap_err();
            let message = redact_toml_error(&err, text);
            assert!(!message.contains(SECRET), "{text:?}: {message}");
            assert!(!message.contains("SECRET"), "{text:?}: {message}");
            assert!(
                message.starts_with("line 2") || message.starts_with("line 3"),
                "{message}"
            );
        }
    }

    #[test]
    fn field_names_and_expected_tokens_stay() {
        assert_eq!(
            redact_message("invalid basic string, expected `\"`"),
            "invalid basic string, expected `\"`"
        );
        assert_eq!(
            redact_message("unknown field `tokn`, expected one of `token`"),
            "unknown field `tokn`, expected one of `token`"
        );
        assert_eq!(
            redact_message("invalid type: string \"s.x\", expected u64"),
            "invalid type: string \"…\", expected u64"
        );
        assert_eq!(
            redact_message("unknown variant `s.x`, expected `Local`"),
            "unknown variant `…`, expected `Local`"
        );
    }
}
