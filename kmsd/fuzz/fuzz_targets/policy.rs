//! The policy-file parser and the wildcard matcher.
#![no_main]

use kmsd::policy::{Policy, wildcard_match};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = Policy::from_toml(text);
    if let Some((pattern, candidate)) = text.split_once('\n') {
        let matched = wildcard_match(pattern, candidate);
        // A pattern without wildcards matches only itself.
        if !pattern.contains(['*', '?']) {
            assert_eq!(matched, pattern == candidate);
        }
    }
});
