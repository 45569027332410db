//! A `_CURRENT` pointer from storage: any bytes parse or fail with an error; a parsed pointer
//! survives a round trip through its own JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = shardyfusion_manifest::pointer_from_json(data) {
        let again = shardyfusion_manifest::pointer_from_json(
            shardyfusion_manifest::pointer_to_json(&p).as_bytes(),
        )
        .expect("a pointer's own JSON parses");
        assert_eq!(again.manifest_ref, p.manifest_ref);
    }
});
