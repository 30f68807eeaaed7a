//! The sealed-blob parser: any bytes either parse into a header whose
//! re-encoding is the same prefix, or are refused; never a panic.
#![no_main]

use kmsd::blob;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(parsed) = blob::parse(data) {
        let encoded = parsed.header.encode(0);
        assert_eq!(encoded.as_slice(), parsed.header_bytes);
        assert_eq!(parsed.header_bytes.len() + parsed.payload.len(), data.len());
        let _ = blob::LocalPayload::parse(parsed.payload);
    }
});
