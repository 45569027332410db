//! `shardy`: write, inspect and query shardyfusion snapshots from the terminal.
//!
//! Errors print one JSON line on stderr (`{"op": …, "error": …}`) and exit non-zero; never a
//! panic or a backtrace.

#![allow(clippy::print_stdout, clippy::print_stderr)] // a terminal program prints

mod batch;
mod cleanup;
mod config;
mod input;
mod output;
mod read;
mod repl;
mod write;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use shardyfusion::storage::StorageResolver;
use shardyfusion::{
    AddressingStyle, ManifestStore, ManifestStoreSpec, S3ConnectionOptions,
    StaticCredentialProvider, VerifySsl,
};

use crate::config::{ReaderConfig, load_profile, load_reader};
use crate::output::{Format, Out, ValueFormat};

/// Write, inspect and query shardyfusion snapshots.
#[derive(Debug, Parser)]
#[command(name = "shardy", version, about, propagate_version = true)]
pub(crate) struct Cli {
    /// Pointer URL or path (`s3://bucket/prefix/_CURRENT`, `/data/snap/_CURRENT`); split at the
    /// last `/` into prefix and pointer key. Else `SHARDY_CURRENT`, else `[reader].current_url`.
    #[arg(long, global = true, value_name = "URL|PATH")]
    current_url: Option<String>,
    /// `reader.toml` (else `SHARDY_CONFIG`, `./reader.toml`, `~/.config/shardy/reader.toml`).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// `credentials.toml` (else `SHARDY_CREDENTIALS`, `./credentials.toml`,
    /// `~/.config/shardy/credentials.toml`).
    #[arg(long, global = true, value_name = "PATH")]
    credentials: Option<PathBuf>,
    /// S3 connection option `KEY=VALUE` (repeatable): addressing_style, signature_version,
    /// verify_ssl, connect_timeout, read_timeout, max_attempts, endpoint_url, region,
    /// anonymous (unsigned requests to a public bucket).
    #[arg(long = "s3-option", global = true, value_name = "KEY=VALUE")]
    s3_options: Vec<String>,
    /// Also follow manifest refs and shard URLs under this URL prefix (repeatable; also
    /// `[reader].allowed_url_prefixes`). By default only the store's own bucket or directory is
    /// trusted.
    #[arg(long = "allow-url-prefix", global = true, value_name = "URL")]
    allow_url_prefixes: Vec<String>,
    /// Output format: json, jsonl, table, text (default: text at a terminal, jsonl when piped;
    /// also `[output].format`).
    #[arg(long, global = true, value_name = "FORMAT")]
    output_format: Option<String>,
    /// How values are shown: auto (JSON as JSON, UTF-8 as text, else base64), utf8, json,
    /// base64, hex. Default: auto for text and table output, base64 for json and jsonl (also
    /// `[output].value_format`).
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    value_format: Option<ValueFormat>,
    /// How keys are given (arguments and `multiget -` lines): text (as typed), hex or base64
    /// of the key's bytes (so any key can be entered; integer encodings take their 8 or 4
    /// big-endian bytes).
    #[arg(
        long,
        global = true,
        value_name = "FORMAT",
        default_value = "text",
        value_parser = ["text", "hex", "base64"]
    )]
    key_format: String,
    /// Pin a manifest ref for this invocation (never moves `_CURRENT`).
    #[arg(
        long = "ref",
        global = true,
        value_name = "REF",
        conflicts_with = "offset"
    )]
    manifest_ref: Option<String>,
    /// Pin the manifest at this offset of the history (0 = newest).
    #[arg(long, global = true, value_name = "N")]
    offset: Option<usize>,
    /// No command: the interactive REPL.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Look one key up.
    Get {
        /// The key (coerced by the snapshot's key encoding).
        #[arg(allow_negative_numbers = true)]
        key: String,
        /// Routing context `column=value` for multi-column CEL (repeatable).
        #[arg(long = "routing-context", value_name = "K=V")]
        routing_context: Vec<String>,
        /// Exit 1 when the key is absent.
        #[arg(long)]
        strict: bool,
    },
    /// Look several keys up (`-` alone reads keys from stdin, one per line).
    Multiget {
        /// Keys, or `-`.
        #[arg(required = true, allow_negative_numbers = true)]
        keys: Vec<String>,
        /// Routing context `column=value` (repeatable).
        #[arg(long = "routing-context", value_name = "K=V")]
        routing_context: Vec<String>,
    },
    /// Facts about the snapshot.
    Info,
    /// Every shard of the snapshot.
    Shards,
    /// Reader health.
    Health {
        /// Degraded when the manifest is older than this many seconds.
        #[arg(long, value_name = "SECONDS")]
        staleness_threshold: Option<f64>,
    },
    /// The shard of a key.
    Route {
        /// The key.
        #[arg(allow_negative_numbers = true)]
        key: String,
        /// Routing context `column=value` (repeatable).
        #[arg(long = "routing-context", value_name = "K=V")]
        routing_context: Vec<String>,
    },
    /// Published manifests, newest first.
    History {
        /// How many.
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
    /// Point `_CURRENT` at another manifest: exactly one of `--ref REF`, `--run-id ID` (searched
    /// in the newest 100) or `--offset N` (0 = newest).
    Rollback {
        /// A run id among the newest 100 manifests.
        #[arg(long)]
        run_id: Option<String>,
    },
    /// Build and publish a snapshot from a JSONL, CSV or Parquet file.
    Write(Box<write::WriteArgs>),
    /// Delete stale shard attempts of the current (or pinned) run; with --include-old-runs,
    /// --older-than or --keep-last also old runs' shard data (never that of a run whose writer
    /// still holds its lease). Manifests and run records are never deleted.
    Cleanup(cleanup::CleanupArgs),
    /// Print a shell completion script: `shardy completions bash > /etc/bash_completion.d/shardy`,
    /// `shardy completions zsh > ~/.zfunc/_shardy`, `shardy completions fish >
    /// ~/.config/fish/completions/shardy.fish`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `shardy man > shardy.1; man ./shardy.1`.
    Man,
    /// Run a YAML batch script (`commands:` list, optional `on_error: stop|continue`).
    Exec {
        /// The script.
        #[arg(long)]
        script: PathBuf,
        /// Write the records here instead of stdout.
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

impl Command {
    fn op(&self) -> &'static str {
        match self {
            Command::Get { .. } => "get",
            Command::Multiget { .. } => "multiget",
            Command::Info => "info",
            Command::Shards => "shards",
            Command::Health { .. } => "health",
            Command::Route { .. } => "route",
            Command::History { .. } => "history",
            Command::Rollback { .. } => "rollback",
            Command::Write(_) => "write",
            Command::Exec { .. } => "exec",
            Command::Cleanup(_) => "cleanup",
            Command::Completions { .. } => "completions",
            Command::Man => "man",
        }
    }
}

/// No snapshot was named (no `--current-url`, `SHARDY_CURRENT` or `[reader].current_url`).
#[derive(Debug)]
struct NoSnapshot;

impl std::fmt::Display for NoSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "no snapshot given: pass --current-url URL (the _CURRENT object a write printed), set \
             SHARDY_CURRENT, or [reader].current_url in reader.toml",
        )
    }
}

impl std::error::Error for NoSnapshot {}

/// Everything a command needs: the store, the storage resolver, output settings.
pub(crate) struct Ctx {
    pub(crate) store: Arc<dyn ManifestStore>,
    pub(crate) resolver: StorageResolver,
    pub(crate) prefix: Option<String>,
    /// The pointer object's URL (object-store backend), for messages.
    pub(crate) pointer_url: Option<String>,
    /// How keys are given.
    pub(crate) key_format: shardyfusion::KeyFormat,
    pub(crate) out: Out,
    pub(crate) manifest_ref: Option<String>,
    pub(crate) offset: Option<usize>,
}

fn parse_bool(v: &str) -> anyhow::Result<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        other => anyhow::bail!("expected true/false, got {other:?}"),
    }
}

/// The storage resolver from the S3 settings; `max_attempts` (a command's own retry flag) wins
/// over `reader.toml` and `--s3-option`.
fn s3_settings(
    cli: &Cli,
    cfg: &ReaderConfig,
    max_attempts: Option<u32>,
) -> anyhow::Result<StorageResolver> {
    let mut opts = S3ConnectionOptions::new();
    let mut builder = StorageResolver::builder();
    let profile_name = cfg
        .reader
        .credentials_profile
        .clone()
        .unwrap_or_else(|| "default".to_owned());
    if let Some(p) = load_profile(cli.credentials.as_deref(), &profile_name)? {
        let nonempty = |s: &Option<String>| s.clone().filter(|v| !v.is_empty());
        if let Some(e) = nonempty(&p.endpoint_url) {
            opts = opts.with_endpoint_url(e);
        }
        if let Some(r) = nonempty(&p.region) {
            opts = opts.with_region(r);
        }
        if let Some(a) = nonempty(&p.addressing_style) {
            opts = opts.with_addressing_style(a.parse::<AddressingStyle>()?);
        }
        match &p.verify_ssl {
            Some(toml::Value::Boolean(false)) => opts = opts.with_verify_ssl(VerifySsl::Skip),
            Some(toml::Value::String(path)) if !path.is_empty() => {
                opts = opts.with_verify_ssl(VerifySsl::CaBundle(path.into()))
            }
            _ => {}
        }
        opts = opts
            .with_connect_timeout(Duration::from_secs_f64(p.connect_timeout.unwrap_or(10.0)))
            .with_read_timeout(Duration::from_secs_f64(p.read_timeout.unwrap_or(30.0)))
            .with_max_attempts(p.max_attempts.unwrap_or(3))
            .with_anonymous(p.anonymous.unwrap_or(false));
        if let (Some(id), Some(secret)) =
            (nonempty(&p.access_key_id), nonempty(&p.secret_access_key))
        {
            let token = nonempty(&p.session_token).map(Into::into);
            builder = builder
                .credential_provider(Arc::new(StaticCredentialProvider::new(id, secret, token)));
        }
    }
    for kv in &cli.s3_options {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--s3-option takes KEY=VALUE, got {kv:?}"))?;
        match k {
            "addressing_style" => opts = opts.with_addressing_style(v.parse::<AddressingStyle>()?),
            "signature_version" => opts.signature_version = Some(v.to_owned()),
            "verify_ssl" => {
                opts = opts.with_verify_ssl(if parse_bool(v)? {
                    VerifySsl::Verify
                } else {
                    VerifySsl::Skip
                })
            }
            "connect_timeout" => opts = opts.with_connect_timeout(Duration::from_secs(v.parse()?)),
            "read_timeout" => opts = opts.with_read_timeout(Duration::from_secs(v.parse()?)),
            "max_attempts" => opts = opts.with_max_attempts(v.parse()?),
            "endpoint_url" => opts = opts.with_endpoint_url(v),
            "region" => opts = opts.with_region(v),
            "anonymous" => opts = opts.with_anonymous(parse_bool(v)?),
            other => eprintln!("warning: unknown --s3-option {other:?} ignored"),
        }
    }
    if let Some(n) = max_attempts {
        opts = opts.with_max_attempts(n);
    }
    opts.validate()?;
    Ok(builder.s3_options(opts).build())
}

/// Split a pointer URL at the last `/` into (prefix, pointer key).
fn split_current(url: &str) -> anyhow::Result<(String, String)> {
    let (prefix, key) = url.rsplit_once('/').ok_or_else(|| {
        anyhow::anyhow!("current URL {url:?} has no '/' to split prefix and pointer key")
    })?;
    if key.is_empty() || prefix.is_empty() || prefix.ends_with(':') {
        anyhow::bail!(
            "current URL {url:?} must name the pointer object, e.g. s3://bucket/prefix/_CURRENT"
        );
    }
    Ok((prefix.to_owned(), key.to_owned()))
}

fn build_ctx(cli: &Cli, prefix_override: Option<&str>) -> anyhow::Result<Ctx> {
    build_ctx_with(cli, prefix_override, None)
}

fn build_ctx_with(
    cli: &Cli,
    prefix_override: Option<&str>,
    max_attempts: Option<u32>,
) -> anyhow::Result<Ctx> {
    let cfg = load_reader(cli.config.as_deref())?;
    let resolver = s3_settings(cli, &cfg, max_attempts)?;
    let format = match cli.output_format.clone().or(cfg.output.format.clone()) {
        Some(f) => Format::parse(&f)?,
        // People at a terminal get text; pipes and files get one JSON record per line.
        None if std::io::IsTerminal::is_terminal(&std::io::stdout()) => Format::Text,
        None => Format::Jsonl,
    };
    let values = match (cli.value_format, &cfg.output.value_format) {
        (Some(v), _) => Some(v),
        (None, Some(name)) => Some(ValueFormat::parse(name)?),
        (None, None) => None,
    };
    let out = Out::new(format, values, cfg.output.null_repr.clone());
    let backend = cfg
        .manifest_store
        .backend
        .clone()
        .unwrap_or_else(|| "s3".to_owned());
    let allowed: Vec<String> = cli
        .allow_url_prefixes
        .iter()
        .chain(&cfg.reader.allowed_url_prefixes)
        .cloned()
        .collect();
    let db_prefix = || {
        prefix_override
            .map(str::to_owned)
            .or(cfg.reader.s3_prefix.clone())
            .filter(|s| !s.is_empty())
    };
    let mut pointer_url = None;
    let (spec, prefix) = match backend.as_str() {
        "s3" => {
            let (prefix, key) = match prefix_override {
                Some(p) => (p.to_owned(), shardyfusion::CURRENT_POINTER_KEY.to_owned()),
                None => {
                    let url = cli
                        .current_url
                        .clone()
                        .or_else(|| {
                            std::env::var("SHARDY_CURRENT")
                                .ok()
                                .filter(|v| !v.is_empty())
                        })
                        .or(cfg.reader.current_url.clone())
                        .ok_or(NoSnapshot)?;
                    split_current(&url)?
                }
            };
            pointer_url = Some(format!("{prefix}/{key}"));
            let spec = ManifestStoreSpec::ObjectStore {
                prefix: prefix.clone(),
                pointer_key: key,
                unconditional_pointer_writes: cfg.manifest_store.unconditional_pointer_writes
                    == Some(true),
            };
            (spec, Some(prefix))
        }
        "postgres" => {
            if cli.current_url.is_some() {
                eprintln!("warning: --current-url is ignored with the postgres manifest store");
            }
            let dsn = cfg
                .manifest_store
                .dsn
                .clone()
                .or_else(|| std::env::var("SHARDY_MANIFEST_DSN").ok())
                .ok_or_else(|| anyhow::anyhow!("[manifest_store].dsn or SHARDY_MANIFEST_DSN is required for the postgres backend"))?;
            let spec = ManifestStoreSpec::Postgres {
                dsn,
                table_name: cfg.manifest_store.table_name.clone(),
                ensure_table: cfg.manifest_store.ensure_table,
            };
            (spec, db_prefix())
        }
        "sqlite" => {
            let path = cfg.manifest_store.path.clone().ok_or_else(|| {
                anyhow::anyhow!("[manifest_store].path is required for the sqlite backend")
            })?;
            let spec = ManifestStoreSpec::Sqlite {
                path: path.into(),
                table_name: cfg.manifest_store.table_name.clone(),
            };
            (spec, db_prefix())
        }
        other => {
            anyhow::bail!("[manifest_store].backend must be s3, postgres or sqlite, got {other:?}")
        }
    };
    let store = spec.open(resolver.clone(), &allowed)?;
    Ok(Ctx {
        store,
        resolver,
        prefix,
        pointer_url,
        key_format: cli.key_format.parse()?,
        out,
        manifest_ref: cli.manifest_ref.clone(),
        offset: cli.offset,
    })
}

fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match &cli.command {
        Some(Command::Completions { shell }) => {
            use clap::CommandFactory as _;
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "shardy",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Man) => {
            use clap::CommandFactory as _;
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Write(args)) => {
            let ctx = build_ctx(cli, args.prefix.as_deref())?;
            rt.block_on(write::run(&ctx, args))
        }
        Some(Command::Cleanup(args)) => {
            let ctx = build_ctx_with(cli, None, args.max_attempts())?;
            rt.block_on(cleanup::run(&ctx, args))
        }
        Some(Command::Exec { script, output }) => {
            let mut ctx = build_ctx(cli, None)?;
            rt.block_on(batch::exec(&mut ctx, script, output.as_deref()))
        }
        Some(cmd) => {
            let ctx = build_ctx(cli, None)?;
            rt.block_on(read::run(&ctx, cmd))
        }
        None => match build_ctx(cli, None) {
            Ok(mut ctx) => rt.block_on(repl::repl(&mut ctx)),
            // `shardy` alone with nothing configured: say what it can do.
            Err(e) if e.downcast_ref::<NoSnapshot>().is_some() => {
                use clap::CommandFactory as _;
                eprintln!("{}", Cli::command().render_help());
                eprintln!("{e}");
                Ok(ExitCode::from(2))
            }
            Err(e) => Err(e),
        },
    }
}

/// `docs/reference/cli.md`, rendered from the clap definitions (`cargo xtask codegen`).
fn reference_markdown() -> String {
    use clap::CommandFactory as _;
    let mut root = Cli::command();
    let mut out = String::from(
        "<!-- Generated by `cargo xtask codegen` from the clap definitions of shardyfusion-cli. Do not edit. -->\n\n# `shardy` command reference\n\n",
    );
    let help = |c: &mut clap::Command| c.render_long_help().to_string();
    out.push_str(&format!("```text\n{}```\n", help(&mut root)));
    let names: Vec<String> = root
        .get_subcommands()
        .map(|c| c.get_name().to_owned())
        .filter(|n| n != "help")
        .collect();
    for name in names {
        if let Some(sub) = root.find_subcommand_mut(&name) {
            let mut sub = sub.clone().bin_name(format!("shardy {name}"));
            out.push_str(&format!(
                "\n## `shardy {name}`\n\n```text\n{}```\n",
                help(&mut sub)
            ));
        }
    }
    out
}

/// The error chain as one line, down to the first library error (whose message already
/// includes its causes).
fn error_text(e: &anyhow::Error) -> String {
    let mut parts = Vec::new();
    for cause in e.chain() {
        parts.push(cause.to_string());
        if cause.downcast_ref::<shardyfusion::Error>().is_some() {
            break;
        }
    }
    parts.join(": ")
}

fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        Some("__reference") => {
            print!("{}", reference_markdown());
            return ExitCode::SUCCESS;
        }
        Some("__config-reference") => {
            print!("{}", config::reference_markdown());
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let cli = Cli::parse();
    let op = cli.command.as_ref().map_or("repl", Command::op);
    match run(&cli) {
        Ok(code) => code,
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            // The reader of our output went away (`| head`): nothing to report.
            ExitCode::SUCCESS
        }
        Err(e) => {
            let mut record = serde_json::json!({"op": op, "error": error_text(&e)});
            if let Some(se) = e.downcast_ref::<shardyfusion::Error>() {
                record["error_type"] = se.kind().name().into();
                if let Some(r) = se.manifest_ref() {
                    record["manifest_ref"] = r.into();
                }
            }
            if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                eprintln!(
                    "shardy {op}: error: {}",
                    record["error"].as_str().unwrap_or_default()
                );
            } else {
                eprintln!("{record}");
            }
            if op == "health" {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}
