//! The interactive REPL (`shardy` with no command): line editing, history and completion at a
//! terminal (rustyline), plain line reading from a pipe; `help`; `use` pins a manifest for
//! later commands and never moves `_CURRENT`.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::process::ExitCode;

use anyhow::Result;
use clap::CommandFactory as _;
use rustyline::completion::{Completer, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Helper};
use serde_json::json;

use crate::batch::{parse_line, words};
use crate::{Cli, Ctx, read};

/// The REPL's commands and what they do (`help`, completion).
const COMMANDS: &[(&str, &str)] = &[
    (
        "get",
        "get KEY [--routing-context COL=VALUE]...   look one key up",
    ),
    (
        "multiget",
        "multiget KEY... | -                       look several keys up",
    ),
    (
        "info",
        "info                                      facts about the snapshot",
    ),
    (
        "shards",
        "shards                                    every shard: rows, min/max key, URL",
    ),
    (
        "route",
        "route KEY                                 the shard a key routes to",
    ),
    (
        "health",
        "health [SECONDS]                          reader health (degraded when older)",
    ),
    (
        "history",
        "history [N]                               published manifests, newest first",
    ),
    (
        "use",
        "use --offset N | --ref REF | --latest    pin a manifest (never moves _CURRENT)",
    ),
    (
        "refresh",
        "refresh                                   follow _CURRENT again",
    ),
    (
        "help",
        "help [COMMAND]                            this list, or one command's options",
    ),
    ("quit", "quit | exit                               leave"),
];

/// Completes the command word, then the options of that command.
struct ShardyHelper;

impl Completer for ShardyHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let head = &line[..pos];
        let start = head.rfind(char::is_whitespace).map_or(0, |i| i + 1);
        let word = &head[start..];
        let candidates: Vec<String> = if start == 0 {
            COMMANDS
                .iter()
                .map(|(c, _)| (*c).to_owned())
                .chain(["exit".to_owned()])
                .collect()
        } else {
            let command = head.split_whitespace().next().unwrap_or_default();
            let cli = Cli::command();
            match cli.find_subcommand(command) {
                Some(sub) => sub
                    .get_arguments()
                    .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
                    .collect(),
                None if command == "use" => {
                    vec!["--offset".into(), "--ref".into(), "--latest".into()]
                }
                None => Vec::new(),
            }
        };
        let pairs = candidates
            .into_iter()
            .filter(|c| c.starts_with(word))
            .map(|c| Pair {
                display: c.clone(),
                replacement: c,
            })
            .collect();
        Ok((start, pairs))
    }
}

impl Hinter for ShardyHelper {
    type Hint = String;
}
impl Highlighter for ShardyHelper {}
impl Validator for ShardyHelper {}
impl Helper for ShardyHelper {}

/// `help` or `help COMMAND`.
fn help(command: Option<&str>) -> String {
    match command {
        Some(c) if COMMANDS.iter().any(|(n, _)| *n == c) => {
            let mut cli = Cli::command();
            match cli.find_subcommand_mut(c) {
                Some(sub) => sub.render_help().to_string(),
                None => COMMANDS
                    .iter()
                    .find(|(n, _)| *n == c)
                    .map(|(_, h)| format!("{h}\n"))
                    .unwrap_or_default(),
            }
        }
        Some(other) => format!("unknown command {other:?}; `help` lists them\n"),
        None => {
            let mut out = String::from("commands:\n");
            for (_, h) in COMMANDS {
                out.push_str(&format!("  {h}\n"));
            }
            out.push_str("global options (--output-format, --value-format, ...) are set when shardy starts\n");
            out
        }
    }
}

/// Where history is kept: `SHARDY_HISTORY`, else `$XDG_STATE_HOME/shardy/history`, else
/// `~/.local/state/shardy/history`.
fn history_path() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("SHARDY_HISTORY").filter(|v| !v.is_empty()) {
        return Some(p.into());
    }
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".local/state"))
        })?;
    Some(state.join("shardy/history"))
}

/// An error line: readable at a terminal, one JSON record when piped.
fn report(human: bool, op: &str, e: &anyhow::Error) {
    if human {
        eprintln!("error: {e:#}");
    } else {
        eprintln!("{}", json!({"op": op, "error": format!("{e:#}")}));
    }
}

/// Run one line; `false` to leave.
async fn step(ctx: &mut Ctx, line: &str, human: bool) -> bool {
    let w = match words(line.trim()) {
        Ok(w) => w,
        Err(e) => {
            report(human, "repl", &e);
            return true;
        }
    };
    let Some(first) = w.first() else { return true };
    match first.as_str() {
        "quit" | "exit" => return false,
        "help" | "?" => eprint!("{}", help(w.get(1).map(String::as_str))),
        "refresh" => {
            ctx.manifest_ref = None;
            ctx.offset = None;
            eprintln!("refreshed: following _CURRENT");
        }
        "use" => match (w.get(1).map(String::as_str), w.get(2)) {
            (Some("--latest"), None) => {
                ctx.manifest_ref = None;
                ctx.offset = None;
                eprintln!("following _CURRENT");
            }
            (Some("--ref"), Some(r)) => {
                ctx.manifest_ref = Some(r.clone());
                ctx.offset = None;
                eprintln!("pinned to {r}");
            }
            (Some("--offset"), Some(n)) => match n.parse() {
                Ok(n) => {
                    ctx.offset = Some(n);
                    ctx.manifest_ref = None;
                    eprintln!("pinned to offset {n}");
                }
                Err(_) => report(
                    human,
                    "use",
                    &anyhow::anyhow!("--offset takes a number, got {n:?}"),
                ),
            },
            _ => report(
                human,
                "use",
                &anyhow::anyhow!("use --offset N | --ref REF | --latest"),
            ),
        },
        _ => match parse_line(&w) {
            Ok(cmd) => {
                if let Err(e) = read::run(ctx, &cmd).await {
                    report(human, cmd.op(), &e);
                }
            }
            Err(e) => report(human, first, &e),
        },
    }
    true
}

/// The REPL: with line editing at a terminal, plain lines from a pipe.
pub(crate) async fn repl(ctx: &mut Ctx) -> Result<ExitCode> {
    match read::banner(ctx).await {
        Ok(b) => eprintln!("{b}"),
        Err(e) => eprintln!("warning: {e:#}"),
    }
    if !std::io::stdin().is_terminal() {
        let stdin = std::io::stdin();
        let mut line = String::new();
        loop {
            eprint!("shardy> ");
            let _ = std::io::stderr().flush();
            line.clear();
            if stdin.lock().read_line(&mut line)? == 0 || !step(ctx, &line, false).await {
                break;
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("type `help` for commands, Tab to complete, Ctrl-D to leave");
    let mut editor: rustyline::Editor<ShardyHelper, rustyline::history::DefaultHistory> =
        rustyline::Editor::new()?;
    editor.set_helper(Some(ShardyHelper));
    let history = history_path();
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    loop {
        match editor.readline("shardy> ") {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = editor.add_history_entry(line.as_str());
                }
                if !step(ctx, &line, true).await {
                    break;
                }
            }
            Err(rustyline::error::ReadlineError::Interrupted) => continue,
            Err(rustyline::error::ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(h) = &history {
        if let Some(dir) = h.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = editor.save_history(h);
    }
    Ok(ExitCode::SUCCESS)
}
