//! The configuration loader on arbitrary text: every input is either a configuration or a
//! list of located errors — never a panic, a hang or unbounded memory.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sse_edge::config::Config;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(issues) = Config::from_yaml(text) {
            assert!(!issues.is_empty());
        }
    }
});
