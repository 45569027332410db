//! Property tests for routing and encodings.

use proptest::prelude::*;
use shardyfusion_core::{HashRouter, KeyEncoding, KeyRef, Timestamp, xxh3_digest};

proptest! {
    #[test]
    fn routing_is_deterministic_and_in_range(i in any::<i64>(), s in ".*", b in proptest::collection::vec(any::<u8>(), 0..64), n in 1u32..=70_000) {
        let r = HashRouter::new(n).unwrap();
        for k in [KeyRef::Int(i), KeyRef::Str(&s), KeyRef::Bytes(&b)] {
            let id = r.db_id(k);
            prop_assert!(id < n);
            prop_assert_eq!(id, r.db_id(k));
            prop_assert_eq!(u64::from(id), xxh3_digest(k) % u64::from(n));
        }
    }

    #[test]
    fn str_and_bytes_route_alike(s in ".*", n in 1u32..1000) {
        let r = HashRouter::new(n).unwrap();
        prop_assert_eq!(r.db_id(KeyRef::Str(&s)), r.db_id(KeyRef::Bytes(s.as_bytes())));
    }

    #[test]
    fn integer_encodings_round_trip_through_lookup(v in 0i64..=i64::MAX, w in 0u32..=u32::MAX) {
        let stored = KeyEncoding::U64Be.encode(KeyRef::Int(v)).unwrap();
        prop_assert_eq!(KeyEncoding::U64Be.normalize_lookup_key(KeyRef::Bytes(&stored)).unwrap(), KeyRef::Int(v));
        let stored = KeyEncoding::U32Be.encode(KeyRef::Int(i64::from(w))).unwrap();
        prop_assert_eq!(KeyEncoding::U32Be.normalize_lookup_key(KeyRef::Bytes(&stored)).unwrap(), KeyRef::Int(i64::from(w)));
    }

    #[test]
    fn u64be_preserves_order(a in 0i64..=i64::MAX, b in 0i64..=i64::MAX) {
        let ea = KeyEncoding::U64Be.encode(KeyRef::Int(a)).unwrap();
        let eb = KeyEncoding::U64Be.encode(KeyRef::Int(b)).unwrap();
        prop_assert_eq!(a.cmp(&b), ea.cmp(&eb));
    }

    #[test]
    fn timestamps_round_trip(micros in 0i64..4_102_444_800_000_000) {
        let t = Timestamp::from_unix_micros(micros).unwrap();
        prop_assert_eq!(Timestamp::parse(&t.to_iso()).unwrap(), t);
        prop_assert_eq!(Timestamp::parse(&t.to_key_string()).unwrap(), t);
    }

    #[test]
    fn timestamp_parse_never_panics(s in ".{0,40}") {
        let _ = Timestamp::parse(&s);
    }
}
