//! URLs from storage and users: prefix URL parsing, joining, the trust boundary (SPEC 15.3)
//! and rebasing fail with errors, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardyfusion_core::{PrefixUrl, UrlBoundary, rebase_url, url_join};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // `root|url|recorded`: a store root, a URL read from storage, the manifest's recorded prefix.
    let mut parts = text.splitn(3, '|');
    let (root, url, recorded) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let _ = PrefixUrl::parse(root);
    let _ = PrefixUrl::parse(url);
    let _ = url_join(root, &[url]);
    if let Ok(boundary) = UrlBoundary::new(root) {
        let _ = boundary.check(url, "db_url");
        if let Some(rebased) = rebase_url(url, recorded, root) {
            let _ = boundary.permits(&rebased);
        }
    }
});
