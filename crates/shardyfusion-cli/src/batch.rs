//! `shardy exec` (YAML batch scripts), and the line parsing it shares with the REPL: each step
//! becomes an ordinary command run against the same store.

use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use clap::Parser as _;
use serde_json::{Value, json};

use crate::{Cli, Command, Ctx, read};

/// Parse one command line (REPL syntax) into a command: `get KEY [--routing-context k=v]`,
/// `multiget KEY…`, `info`, `shards`, `health [SECONDS]`, `route KEY`, `history [LIMIT]`.
pub(crate) fn parse_line(words: &[String]) -> Result<Command> {
    let mut argv = vec!["shardy".to_owned()];
    match words.first().map(String::as_str) {
        Some("health") if words.len() == 2 => argv.extend([
            "health".to_owned(),
            "--staleness-threshold".to_owned(),
            words[1].clone(),
        ]),
        Some("history") if words.len() == 2 => {
            argv.extend(["history".to_owned(), "--limit".to_owned(), words[1].clone()])
        }
        _ => argv.extend(words.iter().cloned()),
    }
    let cli = Cli::try_parse_from(argv).map_err(|e| {
        // clap's message without its usage and `--help` hint lines: the part that names what
        // is wrong (a missing argument's name is on the lines after the first).
        let text = e.render().to_string();
        let message: Vec<&str> = text
            .lines()
            .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        anyhow::anyhow!("{}", message.join(" ").trim_start_matches("error: "))
    })?;
    match cli.command {
        Some(
            c @ (Command::Get { .. }
            | Command::Multiget { .. }
            | Command::Info
            | Command::Shards
            | Command::Health { .. }
            | Command::Route { .. }
            | Command::History { .. }),
        ) => Ok(c),
        Some(other) => bail!("{} is not available here", other.op()),
        None => bail!("empty command"),
    }
}

/// Split a line into words: whitespace separated, with single or double quotes.
pub(crate) fn words(line: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut in_word = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        bail!("unclosed quote");
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

fn error_record(ctx: &Ctx, op: &str, e: &anyhow::Error) {
    let mut r = serde_json::Map::new();
    r.insert("op".into(), json!(op));
    r.insert("error".into(), json!(format!("{e:#}")));
    ctx.out.record(&r, || vec![format!("error: {e:#}")]);
}

/// A step of a batch script as a command.
fn script_step(step: &Value) -> Result<(String, Command)> {
    let op = step
        .get("op")
        .and_then(Value::as_str)
        .context("every command needs an `op`")?
        .to_owned();
    let s = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    let ctx_args = |words: &mut Vec<String>| {
        if let Some(Value::Object(m)) = step.get("routing_context") {
            for (k, v) in m {
                words.push("--routing-context".into());
                words.push(format!("{k}={}", s(v)));
            }
        }
    };
    let mut w = vec![op.clone()];
    // Options first, then `--`, then the keys: a key such as `-V` is a key, not a flag.
    match op.as_str() {
        "get" | "route" => {
            let key = s(step
                .get("key")
                .with_context(|| format!("{op} needs a `key`"))?);
            ctx_args(&mut w);
            w.extend(["--".to_owned(), key]);
        }
        "multiget" => {
            let keys = step
                .get("keys")
                .and_then(Value::as_array)
                .filter(|k| !k.is_empty())
                .context("multiget needs a non-empty `keys` list")?;
            ctx_args(&mut w);
            w.push("--".to_owned());
            w.extend(keys.iter().map(s));
        }
        "health" => {
            if let Some(t) = step.get("staleness_threshold") {
                w.push(s(t));
            }
        }
        "history" => {
            if let Some(l) = step.get("limit") {
                w.push(s(l));
            }
        }
        "info" | "shards" => {}
        other => bail!(
            "unknown op {other:?} (get, multiget, refresh, info, shards, route, health, history)"
        ),
    }
    Ok((op, parse_line(&w)?))
}

/// `shardy exec --script FILE [--output FILE]`.
pub(crate) async fn exec(
    ctx: &mut Ctx,
    script: &std::path::Path,
    output: Option<&std::path::Path>,
) -> Result<ExitCode> {
    let text = std::fs::read_to_string(script)
        .with_context(|| format!("reading --script {}", script.display()))?;
    let doc: Value = serde_yaml_ng::from_str(&text)
        .with_context(|| format!("{} is not valid YAML", script.display()))?;
    let commands = doc
        .get("commands")
        .and_then(Value::as_array)
        .with_context(|| format!("{} needs a `commands:` list", script.display()))?
        .clone();
    let stop = doc
        .get("on_error")
        .and_then(Value::as_str)
        .is_none_or(|v| v == "stop");
    if let Some(path) = output {
        ctx.out.send_to_file(
            std::fs::File::create(path)
                .with_context(|| format!("creating --output {}", path.display()))?,
        );
    }
    ctx.out.line_oriented();
    let mut failed = false;
    for step in &commands {
        let op = step
            .get("op")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned();
        let result = if op == "refresh" {
            let r = ctx.store.load_current().await.map_err(anyhow::Error::from);
            r.map(|c| {
                let mut m = serde_json::Map::new();
                m.insert("op".into(), json!("refresh"));
                m.insert("manifest_ref".into(), json!(c.map(|c| c.manifest_ref)));
                ctx.out.record(&m, || vec!["refreshed".into()]);
                ExitCode::SUCCESS
            })
        } else {
            match script_step(step) {
                Ok((_, cmd)) => read::run(ctx, &cmd).await,
                Err(e) => Err(e),
            }
        };
        if let Err(e) = result {
            error_record(ctx, &op, &e);
            failed = true;
            if stop {
                break;
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The interactive session.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_with_quotes() {
        assert_eq!(
            words(r#"get "a b" --routing-context 'region=eu west'"#).unwrap(),
            ["get", "a b", "--routing-context", "region=eu west"]
        );
        assert!(words("get \"open").is_err());
        assert!(words("   ").unwrap().is_empty());
    }
}
