//! Python-compatible JSON text and float formatting.
//!
//! Manifests written by the Python implementation hold JSON produced by `json.dumps` with sorted
//! keys and `ensure_ascii=True`; Rust must write the same bytes. Two styles exist:
//! [`JsonStyle::Spaced`] (`", "` and `": "`, Python's default, used in manifest columns) and
//! [`JsonStyle::Compact`] (`","` and `":"`, used for `_CURRENT` and JSON value columns).
//!
//! ```
//! use serde_json::json;
//! use shardyfusion_core::pyjson::{to_string, JsonStyle};
//! let v = json!({"b": [1, 2.0, null], "a": "é/\n"});
//! assert_eq!(to_string(&v, JsonStyle::Spaced), r#"{"a": "\u00e9/\n", "b": [1, 2.0, null]}"#);
//! assert_eq!(to_string(&v, JsonStyle::Compact), r#"{"a":"\u00e9/\n","b":[1,2.0,null]}"#);
//! ```

use std::fmt::Write as _;

use serde_json::Value;

/// Separator style of Python's `json.dumps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonStyle {
    /// `", "` and `": "` (Python's default).
    Spaced,
    /// `","` and `":"`.
    Compact,
}

/// Serialize `value` like `json.dumps(value, sort_keys=True, ensure_ascii=True, separators=…)`.
pub fn to_string(value: &Value, style: JsonStyle) -> String {
    let mut out = String::new();
    write_value(&mut out, value, style);
    out
}

/// A JSON string literal with Python's `ensure_ascii` escaping.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    write_str(&mut out, s);
    out
}

fn write_value(out: &mut String, value: &Value, style: JsonStyle) {
    let (item_sep, key_sep) = match style {
        JsonStyle::Spaced => (", ", ": "),
        JsonStyle::Compact => (",", ":"),
    };
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                let _ = write!(out, "{i}");
            } else if let Some(u) = n.as_u64() {
                let _ = write!(out, "{u}");
            } else if let Some(f) = n.as_f64() {
                out.push_str(&python_float_repr(f));
            }
        }
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                write_value(out, item, style);
            }
            out.push(']');
        }
        Value::Object(map) => {
            // Sort explicitly: serde_json's map order depends on a cargo feature.
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                write_str(out, k);
                out.push_str(key_sep);
                write_value(out, v, style);
            }
            out.push('}');
        }
    }
}

fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// The shortest round-trip decimal digits of a finite, non-zero `f` and its decimal exponent
/// (`f = ±d.ddd × 10^exp`).
fn shortest_digits(f: f64) -> (bool, String, i32) {
    // Rust's `{:e}` prints the shortest round-trip representation, e.g. `-1.2345e-7`.
    let s = format!("{:e}", f.abs());
    let (mantissa, exp) = s.split_once('e').unwrap_or((s.as_str(), "0"));
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    (f.is_sign_negative(), digits, exp.parse().unwrap_or(0))
}

/// Format with the shortest round-trip digits: fixed notation when `lo <= exp < hi`, otherwise
/// `d[.ddd]e±XX`; `dot_zero` appends `.0` to integral fixed values.
fn format_shortest(f: f64, lo: i32, hi: i32, dot_zero: bool) -> String {
    let (neg, digits, exp) = shortest_digits(f);
    let sign = if neg { "-" } else { "" };
    if f == 0.0 {
        return format!("{sign}0{}", if dot_zero { ".0" } else { "" });
    }
    if exp >= lo && exp < hi {
        let n = digits.len() as i32;
        let body = if exp < 0 {
            format!("0.{}{}", "0".repeat((-exp - 1) as usize), digits)
        } else if exp + 1 >= n {
            let int = format!("{}{}", digits, "0".repeat((exp + 1 - n) as usize));
            if dot_zero { format!("{int}.0") } else { int }
        } else {
            let (a, b) = digits.split_at((exp + 1) as usize);
            format!("{a}.{b}")
        };
        format!("{sign}{body}")
    } else {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{first}{frac}e{esign}{:02}", exp.abs())
    }
}

/// Python's `repr(float)` as `json.dumps` writes it (`1.0`, `0.1`, `1e+20`, `1e-05`,
/// `Infinity`, `NaN`).
pub fn python_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    format_shortest(f, -4, 16, true)
}

/// CEL's `string(double)` as cel-cpp formats it: shortest round-trip digits, fixed notation when
/// the decimal exponent is in `[-4, 6)` without a trailing `.0`, otherwise `d[.ddd]e±XX`;
/// `nan`, `inf`, `-inf`, `-0`.
///
/// ```
/// use shardyfusion_core::pyjson::cel_double_to_string as s;
/// assert_eq!(s(1.0), "1");
/// assert_eq!(s(1e20), "1e+20");
/// assert_eq!(s(1234567.0), "1.234567e+06");
/// ```
pub fn cel_double_to_string(f: f64) -> String {
    if f.is_nan() {
        return "nan".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    format_shortest(f, -4, 6, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn python_repr_matches() {
        let cases = [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (1e20, "1e+20"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (123456789.5, "123456789.5"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5, "-2.5"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.5e-300, "1.5e-300"),
            (f64::INFINITY, "Infinity"),
            (f64::NAN, "NaN"),
        ];
        for (f, want) in cases {
            assert_eq!(python_float_repr(f), want, "{f:e}");
        }
    }

    #[test]
    fn cel_string_double_matches_spec_table() {
        let cases = [
            (1.0, "1"),
            (2.5, "2.5"),
            (0.1234567, "0.1234567"),
            (0.0001, "0.0001"),
            (1e-05, "1e-05"),
            (1e20, "1e+20"),
            (123456.0, "123456"),
            (1000000.0, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (123456789.0, "1.23456789e+08"),
            (9007199254740992.0, "9.007199254740992e+15"),
            (0.1 + 0.2, "0.30000000000000004"),
            (-0.0, "-0"),
            (f64::NEG_INFINITY, "-inf"),
        ];
        for (f, want) in cases {
            assert_eq!(cel_double_to_string(f), want, "{f:e}");
        }
    }

    #[test]
    fn escapes_like_ensure_ascii() {
        assert_eq!(
            quote("a\"b\\c/\u{1}\u{7f}😀\u{8}\u{c}"),
            r#""a\"b\\c/\u0001\u007f\ud83d\ude00\b\f""#
        );
        let v = json!({"z": {"y": 1, "x": [true, false]}, "a": -3});
        assert_eq!(
            to_string(&v, JsonStyle::Spaced),
            r#"{"a": -3, "z": {"x": [true, false], "y": 1}}"#
        );
        assert_eq!(
            to_string(&json!(u64::MAX), JsonStyle::Compact),
            "18446744073709551615"
        );
    }
}
