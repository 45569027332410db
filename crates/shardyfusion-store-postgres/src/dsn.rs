//! Connection strings: parsing into a driver `Config`, and redaction of every secret they can hold.

use std::str::FromStr;

use postgres::Config;
use shardyfusion_core::{Error, Result};

/// Parameters whose values are secrets.
fn is_secret(key: &str) -> bool {
    let key = key.trim().to_ascii_lowercase();
    key == "password" || key == "sslpassword" || key.ends_with("password")
}

/// The connection string with every secret replaced by `***`: the password of URL userinfo, and
/// `password`/`sslpassword` values in URL query parameters and in key/value strings (quoted or
/// not). A string that cannot be taken apart is replaced whole when it may hold a secret.
pub(crate) fn redact(dsn: &str) -> String {
    match dsn.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{}", redact_url_rest(rest)),
        None => redact_key_value(dsn)
            .unwrap_or_else(|| "<connection string that could not be parsed>".to_owned()),
    }
}

fn redact_url_rest(rest: &str) -> String {
    let q = rest.find('?').unwrap_or(rest.len());
    let (base, query) = rest.split_at(q);
    // Hosts never contain '@', so the userinfo ends at the last '@' before the query. An '@'
    // only after the '?' may be part of a password holding a raw '?': hide everything then.
    let at = match base.rfind('@') {
        Some(at) => Some(at),
        None if query.contains('@') => {
            return "<connection URL that could not be parsed>".to_owned();
        }
        None => None,
    };
    let mut out = String::with_capacity(rest.len());
    match at {
        Some(at) => {
            match base[..at].split_once(':') {
                Some((user, _)) => {
                    out.push_str(user);
                    out.push_str(":***");
                }
                None => out.push_str(&base[..at]),
            }
            out.push_str(&base[at..]);
        }
        None => out.push_str(base),
    }
    if let Some(query) = query.strip_prefix('?') {
        out.push('?');
        let params: Vec<String> = query
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if is_secret(k) => format!("{k}=***"),
                _ => p.to_owned(),
            })
            .collect();
        out.push_str(&params.join("&"));
    }
    out
}

/// `key = value` pairs separated by whitespace; values unquoted, or single-quoted with `\`
/// escapes. `None` when the text does not follow that grammar.
fn redact_key_value(dsn: &str) -> Option<String> {
    let mut out = String::with_capacity(dsn.len());
    let mut chars = dsn.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') || key.is_empty() {
            return None;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            value.push('\'');
            loop {
                match chars.next()? {
                    '\\' => {
                        value.push('\\');
                        value.push(chars.next()?);
                    }
                    '\'' => break,
                    c => value.push(c),
                }
            }
            value.push('\'');
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                value.push(c);
            }
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&key);
        out.push('=');
        out.push_str(if is_secret(&key) { "***" } else { &value });
    }
    Some(out)
}

/// Parse a URL or key/value connection string; the error message shows only the redacted form.
pub(crate) fn parse(dsn: &str, redacted: &str) -> Result<Config> {
    Config::from_str(dsn).map_err(|e| {
        Error::config(format!(
            "invalid PostgreSQL connection string {redacted}: {e}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_userinfo_password_is_redacted() {
        assert_eq!(
            redact("postgres://u:s3cret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(
            redact("postgresql://u:p@ss@w0rd@h/db"),
            "postgresql://u:***@h/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
    }

    #[test]
    fn url_query_secrets_are_redacted() {
        assert_eq!(
            redact("postgres://u@h/db?sslmode=require&password=s3cret"),
            "postgres://u@h/db?sslmode=require&password=***"
        );
        assert_eq!(
            redact("postgres://h/db?password=a&sslpassword=b&application_name=x"),
            "postgres://h/db?password=***&sslpassword=***&application_name=x"
        );
        assert_eq!(
            redact("postgres://u:one@h1:5432,h2/db?PASSWORD=two"),
            "postgres://u:***@h1:5432,h2/db?PASSWORD=***"
        );
        let r = redact("postgres://u:one@h/db?application_name=me@x&password=two");
        assert_eq!(
            r,
            "postgres://u:***@h/db?application_name=me@x&password=***"
        );
        // A raw '?' inside a password: nothing of it may show.
        let r = redact("postgres://u:p?ss@h/db");
        assert!(!r.contains("p?ss") && !r.contains("ss@"), "{r}");
    }

    #[test]
    fn key_value_secrets_are_redacted_quoted_or_not() {
        assert_eq!(
            redact("host=h password=s3cret user=u"),
            "host=h password=*** user=u"
        );
        assert_eq!(
            redact("host=h  password = 's3 cr\\'et' sslpassword='x' dbname='my db'"),
            "host=h password=*** sslpassword=*** dbname='my db'"
        );
        assert_eq!(redact("host=h user=u"), "host=h user=u");
        // Not key/value and not a URL: hidden whole.
        let r = redact("host=h password='unterminated");
        assert!(!r.contains("unterminated"), "{r}");
        let r = redact("garbage s3cret");
        assert!(!r.contains("s3cret"), "{r}");
    }

    #[test]
    fn parse_errors_show_only_the_redacted_form() {
        let dsn = "host=h password=s3cret sslmode=verify-full";
        let err = parse(dsn, &redact(dsn)).unwrap_err();
        assert!(!err.message().contains("s3cret"), "{err}");
        assert!(err.message().contains("password=***"), "{err}");
    }
}
