//! Fuzzes the object-metadata parser: lines of `key=value` become a map.
//! Anything may be refused; what is accepted must round-trip unchanged.
#![no_main]

use kms_client::metadata::ObjectMetadata;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let pairs: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|line| line.split_once('='))
        .collect();
    if let Ok(metadata) = ObjectMetadata::from_map(pairs) {
        assert_eq!(ObjectMetadata::from_map(&metadata.to_map()), Ok(metadata));
    }
});
