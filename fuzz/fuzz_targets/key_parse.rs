//! A key typed at the CLI (or any text key input): every encoding and key format parses it or
//! fails with an error, and a parsed key is one its encoding accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardyfusion_core::{KeyEncoding, KeyFormat};

fuzz_target!(|data: &[u8]| {
    for enc in KeyEncoding::ALL {
        for format in [KeyFormat::Text, KeyFormat::Hex, KeyFormat::Base64] {
            if let Ok(key) = enc.parse_key(data, format) {
                enc.check(key.as_key_ref())
                    .expect("a parsed key fits its encoding");
            }
        }
    }
});
