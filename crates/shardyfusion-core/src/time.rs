//! UTC timestamps with microsecond precision, in the forms the snapshot format uses.
//!
//! * [`Timestamp::to_iso`]: `YYYY-MM-DDTHH:MM:SS.ffffffZ`, fraction omitted when zero (pointer
//!   `updated_at`, manifest `created_at`, run records).
//! * [`Timestamp::to_key_string`]: always six fractional digits and `Z` (object keys under
//!   `manifests/` and `runs/`, so text order is time order).
//! * [`Timestamp::parse`] accepts 0–9 fractional digits, `Z`/`z`, `+HH:MM` offsets, `T` or a space
//!   as separator, and no offset (UTC).

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Timelike, Utc};

use crate::error::{Error, Result};

/// A UTC instant truncated to microseconds.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    /// The current time, truncated to microseconds.
    pub fn now() -> Self {
        Self::from_datetime(Utc::now())
    }

    /// From a chrono UTC datetime, truncated to microseconds.
    pub fn from_datetime(dt: DateTime<Utc>) -> Self {
        let nanos = dt.nanosecond() / 1_000 * 1_000;
        Timestamp(dt.with_nanosecond(nanos).unwrap_or(dt))
    }

    /// From microseconds since the Unix epoch.
    pub fn from_unix_micros(micros: i64) -> Option<Self> {
        DateTime::<Utc>::from_timestamp_micros(micros).map(Timestamp)
    }

    /// Microseconds since the Unix epoch.
    pub fn unix_micros(self) -> i64 {
        self.0.timestamp_micros()
    }

    /// The chrono value.
    pub fn as_datetime(self) -> DateTime<Utc> {
        self.0
    }

    /// This instant plus `d` (saturating at the representable range).
    #[must_use]
    pub fn plus(self, d: std::time::Duration) -> Self {
        let delta = TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX);
        Timestamp(self.0.checked_add_signed(delta).unwrap_or(self.0))
    }

    /// Seconds from `self` to `later` (negative if `later` is earlier).
    pub fn seconds_until(self, later: Timestamp) -> f64 {
        (later.unix_micros() - self.unix_micros()) as f64 / 1e6
    }

    fn write_base(self, out: &mut String) {
        use std::fmt::Write as _;
        let d = self.0;
        let _ = write!(
            out,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            d.year(),
            d.month(),
            d.day(),
            d.hour(),
            d.minute(),
            d.second()
        );
    }

    /// `YYYY-MM-DDTHH:MM:SS.ffffffZ`, with the fraction omitted when the microseconds are 0.
    ///
    /// ```
    /// use shardyfusion_core::Timestamp;
    /// let t = Timestamp::parse("2026-03-14T10:30:00.123456789+00:00").unwrap();
    /// assert_eq!(t.to_iso(), "2026-03-14T10:30:00.123456Z");
    /// assert_eq!(Timestamp::parse("2026-03-14 10:30:00").unwrap().to_iso(), "2026-03-14T10:30:00Z");
    /// ```
    pub fn to_iso(self) -> String {
        let mut out = String::with_capacity(27);
        self.write_base(&mut out);
        let micros = self.0.nanosecond() / 1_000;
        if micros != 0 {
            out.push_str(&format!(".{micros:06}"));
        }
        out.push('Z');
        out
    }

    /// `YYYY-MM-DDTHH:MM:SS.ffffffZ` with always six fractional digits (object-key form).
    pub fn to_key_string(self) -> String {
        let mut out = String::with_capacity(27);
        self.write_base(&mut out);
        out.push_str(&format!(".{:06}Z", self.0.nanosecond() / 1_000));
        out
    }

    /// Parse any accepted datetime form (see the module docs).
    pub fn parse(s: &str) -> Result<Self> {
        parse_datetime(s).ok_or_else(|| {
            Error::manifest_parse(format!(
                "invalid datetime {s:?}: expected YYYY-MM-DDTHH:MM:SS[.f{{0,9}}][Z|±HH:MM]"
            ))
        })
    }
}

fn digits(s: &str, n: usize) -> Option<u32> {
    if s.len() == n && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

fn parse_datetime(s: &str) -> Option<Timestamp> {
    let s = s.trim();
    // Every accepted form is ASCII; checking first keeps the byte slicing below panic-free.
    if s.len() < 19 || !s.is_ascii() {
        return None;
    }
    let (date, rest) = s.split_at(10);
    let date = {
        let mut it = date.split('-');
        let (y, m, d) = (it.next()?, it.next()?, it.next()?);
        if it.next().is_some() {
            return None;
        }
        NaiveDate::from_ymd_opt(digits(y, 4)? as i32, digits(m, 2)?, digits(d, 2)?)?
    };
    let rest = rest.strip_prefix(['T', 't', ' '])?;
    let (hms, mut rest) = rest.split_at(8);
    let mut it = hms.split(':');
    let (h, mi, se) = (it.next()?, it.next()?, it.next()?);
    let (h, mi, se) = (digits(h, 2)?, digits(mi, 2)?, digits(se, 2)?);
    let mut micros = 0u32;
    if let Some(frac_rest) = rest.strip_prefix('.') {
        let n = frac_rest.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 || n > 9 {
            return None;
        }
        let frac = &frac_rest[..n];
        let padded = format!("{frac:0<6}");
        micros = padded[..6].parse().ok()?;
        rest = &frac_rest[n..];
    }
    let offset_secs: i64 = match rest {
        "" | "Z" | "z" => 0,
        off => {
            let sign = match off.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let body = &off[1..];
            let (oh, om) = match body.split_once(':') {
                Some((a, b)) => (digits(a, 2)?, digits(b, 2)?),
                None if body.len() == 4 => (digits(&body[..2], 2)?, digits(&body[2..], 2)?),
                None => (digits(body, 2)?, 0),
            };
            if oh > 23 || om > 59 {
                return None;
            }
            sign * i64::from(oh * 3600 + om * 60)
        }
    };
    let time = NaiveTime::from_hms_micro_opt(h, mi, se, micros)?;
    let naive = NaiveDateTime::new(date, time) - TimeDelta::seconds(offset_secs);
    Some(Timestamp(naive.and_utc()))
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_key_string())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_iso())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_forms() {
        let want = "2026-11-24T06:53:30.808441Z";
        for s in [
            "2026-11-24T06:53:30.808441Z",
            "2026-11-24T06:53:30.808441+00:00",
            "2026-11-24 06:53:30.808441z",
            "2026-11-24T06:53:30.808441",
            "2026-11-24T06:53:30.808441999Z",
            "2026-11-24T08:53:30.808441+02:00",
            "2026-11-24T05:23:30.808441-0130",
        ] {
            assert_eq!(Timestamp::parse(s).unwrap().to_iso(), want, "{s}");
        }
        assert_eq!(
            Timestamp::parse("2026-11-24T06:53:30.5Z")
                .unwrap()
                .to_key_string(),
            "2026-11-24T06:53:30.500000Z"
        );
        assert_eq!(
            Timestamp::parse("2026-11-24T06:53:30").unwrap().to_iso(),
            "2026-11-24T06:53:30Z"
        );
    }

    #[test]
    fn rejected_forms() {
        for s in [
            "",
            "2026-11-24",
            "2026-13-24T06:53:30Z",
            "2026-11-24T06:53:30.Z",
            "2026-11-24T06:53:30.1234567890Z",
            "2026-11-24X06:53:30Z",
            "2026-11-24T06:53:30+25:00",
            "2026-11-24T06:53:30 UTC",
            "২০২৬-11-24T06:53:30Z",
        ] {
            let err = Timestamp::parse(s).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::ManifestParse, "{s}");
        }
    }

    #[test]
    fn arithmetic() {
        let t = Timestamp::parse("2026-01-01T00:00:00Z").unwrap();
        let later = t.plus(std::time::Duration::from_secs(600));
        assert_eq!(later.to_iso(), "2026-01-01T00:10:00Z");
        assert_eq!(t.seconds_until(later), 600.0);
        assert_eq!(Timestamp::from_unix_micros(t.unix_micros()), Some(t));
    }
}
