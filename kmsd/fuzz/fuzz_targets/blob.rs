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
        // The intermediate-key payload splits into exactly what it holds.
        if let Ok(Some(p)) = blob::VaultIntermediatePayload::parse(parsed.payload) {
            assert_eq!(
                3 + p.wrapped.len() + p.seed.len() + p.sealed.len(),
                parsed.payload.len()
            );
            let _ = blob::intermediate_key_id(&parsed);
        }
    }
});
