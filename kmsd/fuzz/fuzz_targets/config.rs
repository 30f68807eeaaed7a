//! The configuration parsers: TOML config files and the admin API's
//! backend JSON. Anything may be refused; nothing may panic.
#![no_main]

use kmsd::config::{BackendConfig, BackendSettings, Config, RawConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(raw) = toml::from_str::<RawConfig>(text) {
        let _ = Config::from_raw(raw);
    }
    if let Ok(backend) = BackendConfig::from_json(text) {
        let _ = BackendSettings::from_raw(backend);
    }
});
