//! The read commands: get, multiget, info, shards, health, route, history, rollback.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use serde_json::{Map, Value, json};
use shardyfusion::cel::{CelValue, RoutingContext};
use shardyfusion::reader_async::{AsyncShardedReader, ReaderOptions};
use shardyfusion::{
    CelColumnType, Key, KeyEncoding, KeyFormat, RequiredBuildMeta, ShardingStrategy,
};

use crate::output::{Format, table};
use crate::{Command, Ctx};

/// The keys of `multiget -`: every line of stdin is one key (only `\n` or `\r\n` is
/// stripped; an empty line is the empty key). A key that does not fit is an error naming its
/// line.
fn stdin_keys(encoding: KeyEncoding, format: KeyFormat) -> Result<Vec<Key>> {
    use std::io::Read as _;
    let mut all = Vec::new();
    std::io::stdin()
        .lock()
        .read_to_end(&mut all)
        .context("reading keys from stdin")?;
    let mut lines: Vec<&[u8]> = all.split(|b| *b == b'\n').collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop(); // the terminator of the last line
    }
    lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            encoding
                .parse_key(line, format)
                .with_context(|| format!("stdin line {}", i + 1))
        })
        .collect()
}

type Columns = BTreeMap<String, CelColumnType>;

/// Coerce `--routing-context k=v` values to the declared CEL column types.
fn routing_context(
    pairs: &[String],
    reader: &AsyncShardedReader,
    columns: &Columns,
) -> Result<Option<RoutingContext>> {
    if pairs.is_empty() {
        return Ok(None);
    }
    let info = reader.snapshot_info()?;
    if info.sharding != ShardingStrategy::Cel {
        bail!(
            "--routing-context only applies to CEL-sharded snapshots; this one uses {}",
            info.sharding
        );
    }
    let mut ctx = RoutingContext::new();
    for p in pairs {
        let (k, v) = p
            .split_once('=')
            .with_context(|| format!("--routing-context takes COLUMN=VALUE, got {p:?}"))?;
        let ty = columns.get(k).with_context(|| {
            format!(
                "routing context column {k:?} is not one of the snapshot's CEL columns {:?}",
                columns.keys().collect::<Vec<_>>()
            )
        })?;
        let bad = |e: &dyn std::fmt::Display| {
            anyhow::anyhow!("routing context {k}={v:?} is not a valid {ty}: {e}")
        };
        let value = match ty {
            CelColumnType::Int => CelValue::Int(v.parse().map_err(|e| bad(&e))?),
            CelColumnType::Uint => CelValue::Uint(v.parse().map_err(|e| bad(&e))?),
            CelColumnType::Double => CelValue::Double(v.parse().map_err(|e| bad(&e))?),
            CelColumnType::Bool => CelValue::Bool(match v {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" => false,
                _ => return Err(bad(&"expected true/false")),
            }),
            CelColumnType::String => CelValue::Str(v.to_owned()),
            CelColumnType::Bytes => CelValue::Bytes(v.as_bytes().to_vec()),
        };
        ctx.insert(k.to_owned(), value);
    }
    Ok(Some(ctx))
}

fn key_json(k: &Key) -> Value {
    match k {
        Key::Int(i) => json!(i),
        Key::Str(s) => json!(s),
        Key::Bytes(b) => json!(String::from_utf8_lossy(b)),
    }
}

fn opt_key_json(k: &Option<Key>) -> Value {
    k.as_ref().map_or(Value::Null, key_json)
}

/// Open the snapshot (pinned by `--ref`/`--offset`) and return its build metadata.
async fn open(ctx: &Ctx) -> Result<(AsyncShardedReader, RequiredBuildMeta)> {
    let options = ReaderOptions::default().with_storage(ctx.resolver.clone());
    let pinned = match (&ctx.manifest_ref, ctx.offset) {
        (Some(r), _) => Some(r.clone()),
        (None, Some(n)) => {
            let history = ctx.store.list_manifests(n + 1).await?;
            Some(
                history
                    .get(n)
                    .map(|m| m.manifest_ref.clone())
                    .with_context(|| {
                        format!(
                            "--offset {n} is out of range: the history has {} manifests",
                            history.len()
                        )
                    })?,
            )
        }
        (None, None) => None,
    };
    let reader = match &pinned {
        Some(r) => AsyncShardedReader::open_pinned(ctx.store.clone(), r, options).await?,
        None => match AsyncShardedReader::open(ctx.store.clone(), options).await {
            Ok(r) => r,
            Err(e) => return Err(no_pointer_hint(ctx, e).await),
        },
    };
    let manifest_ref = reader.snapshot_info()?.manifest_ref;
    let manifest = ctx.store.load_manifest(&manifest_ref).await?;
    Ok((reader, manifest.build))
}

/// An open that found no pointer, explained: the URL that was tried, and whether the URL is
/// a prefix with a `_CURRENT` of its own (a `--current-url` given the write's `--prefix`).
async fn no_pointer_hint(ctx: &Ctx, e: shardyfusion::Error) -> anyhow::Error {
    let missing = e.kind() == shardyfusion::ErrorKind::ReaderState
        && matches!(ctx.store.load_current().await, Ok(None));
    let Some(url) = ctx.pointer_url.as_ref().filter(|_| missing) else {
        return e.into();
    };
    let nested = format!("{url}/{}", shardyfusion::CURRENT_POINTER_KEY);
    let exists = match ctx.resolver.resolve(&nested) {
        Ok(loc) => {
            use shardyfusion::storage::object_store::ObjectStoreExt as _;
            loc.store.head(&loc.path).await.is_ok()
        }
        Err(_) => false,
    };
    let hint = if exists {
        format!(
            "no snapshot pointer at {url}, but {nested} exists: pass --current-url {nested} \
             (the pointer object, not the prefix it is in)"
        )
    } else {
        format!(
            "no snapshot pointer at {url}: nothing has been published there (a write prints the \
             --current-url to read it with)"
        )
    };
    anyhow::Error::new(e).context(hint)
}

/// The REPL banner: `Loaded manifest run_id=<id> (<N> shards, <strategy> sharding)`.
pub(crate) async fn banner(ctx: &Ctx) -> Result<String> {
    let (reader, _) = open(ctx).await?;
    let i = reader.snapshot_info()?;
    reader.close();
    Ok(format!(
        "Loaded manifest run_id={} ({} shards, {} sharding)",
        i.run_id, i.num_dbs, i.sharding
    ))
}

fn rec(pairs: Vec<(&str, Value)>) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

pub(crate) async fn run(ctx: &Ctx, cmd: &Command) -> Result<ExitCode> {
    let out = &ctx.out;
    match cmd {
        Command::History { limit } => {
            let history = ctx.store.list_manifests(*limit).await?;
            let current = ctx.store.load_current().await?.map(|c| c.manifest_ref);
            let is_current = |r: &str| current.as_deref() == Some(r);
            let items: Vec<Value> = history
                .iter()
                .enumerate()
                .map(|(i, m)| json!({"offset": i, "run_id": m.run_id, "published_at": m.published_at.to_iso(), "ref": m.manifest_ref, "current": is_current(&m.manifest_ref)}))
                .collect();
            out.record(
                &rec(vec![
                    ("op", json!("history")),
                    ("manifests", Value::Array(items)),
                ]),
                || match out.format {
                    Format::Table => table(
                        &["", "offset", "published_at", "run_id", "ref"],
                        &history
                            .iter()
                            .enumerate()
                            .map(|(i, m)| {
                                vec![
                                    if is_current(&m.manifest_ref) { "*" } else { "" }.to_owned(),
                                    i.to_string(),
                                    m.published_at.to_iso(),
                                    m.run_id.clone(),
                                    m.manifest_ref.clone(),
                                ]
                            })
                            .collect::<Vec<_>>(),
                    ),
                    _ => history
                        .iter()
                        .enumerate()
                        .map(|(i, m)| {
                            let mark = if is_current(&m.manifest_ref) {
                                "* "
                            } else {
                                "  "
                            };
                            format!(
                                "{mark}[{i}] {}  run_id={}",
                                m.published_at.to_iso(),
                                m.run_id
                            )
                        })
                        .collect(),
                },
            );
            return Ok(ExitCode::SUCCESS);
        }
        Command::Rollback { run_id } => {
            let target = match (&ctx.manifest_ref, run_id, ctx.offset) {
                (Some(r), None, None) => r.clone(),
                (None, Some(id), None) => {
                    let history = ctx.store.list_manifests(100).await?;
                    history
                        .iter()
                        .find(|m| &m.run_id == id)
                        .map(|m| m.manifest_ref.clone())
                        .with_context(|| {
                            format!("run id {id:?} is not among the newest 100 manifests")
                        })?
                }
                (None, None, Some(n)) => {
                    let history = ctx.store.list_manifests(n + 1).await?;
                    history
                        .get(n)
                        .map(|m| m.manifest_ref.clone())
                        .with_context(|| {
                            format!(
                                "--offset {n} is out of range: the history has {} manifests",
                                history.len()
                            )
                        })?
                }
                _ => bail!("rollback takes exactly one of --ref REF, --run-id ID, --offset N"),
            };
            let before = ctx.store.load_current().await?.map(|c| c.manifest_ref);
            // Newest first: a target listed before the current manifest is newer than it.
            let recent = ctx.store.list_manifests(100).await?;
            let position = |r: &str| recent.iter().position(|m| m.manifest_ref == r);
            let direction = match (before.as_deref(), position(&target)) {
                (Some(b), _) if b == target => "unchanged",
                (Some(b), Some(t)) if position(b).is_some_and(|c| t < c) => "forward",
                _ => "back",
            };
            ctx.store.set_current(&target).await?;
            let text = match direction {
                "unchanged" => format!("_CURRENT already names: {target}"),
                "forward" => format!("Rolled forward _CURRENT to: {target}"),
                _ => format!("Rolled back _CURRENT to: {target}"),
            };
            out.record(
                &rec(vec![
                    ("op", json!("rollback")),
                    ("direction", json!(direction)),
                    ("from", json!(before)),
                    ("to", json!(target)),
                ]),
                || vec![text.clone()],
            );
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }

    let opened = match cmd {
        Command::Health { .. } => match open(ctx).await {
            Ok(r) => r,
            Err(e) => {
                let record = rec(vec![
                    ("op", json!("health")),
                    ("status", json!("unhealthy")),
                    ("error", json!(format!("{e:#}"))),
                ]);
                out.record(&record, || vec![format!("status=unhealthy error={e:#}")]);
                return Ok(ExitCode::from(2));
            }
        },
        _ => open(ctx).await?,
    };
    let (reader, build) = opened;
    let columns: Columns = build.sharding.cel_columns.clone().unwrap_or_default();
    let enc = reader.key_encoding()?;
    let code = match cmd {
        Command::Get {
            key,
            routing_context: rc,
            strict,
        } => {
            let k = enc.parse_key(key.as_bytes(), ctx.key_format)?;
            let ctxv = routing_context(rc, &reader, &columns)?;
            let v = reader
                .get_with_context(k.as_key_ref(), ctxv.as_ref())
                .await?;
            let shown = v.as_ref().map(|b| out.value_text(key, b)).transpose()?;
            let value = match &v {
                Some(b) => out.value_json(key, b)?,
                None => Value::Null,
            };
            out.record(
                &rec(vec![
                    ("op", json!("get")),
                    ("key", key_json(&k)),
                    ("found", json!(v.is_some())),
                    ("value", value),
                ]),
                || match out.format {
                    Format::Table => table(
                        &["key", "found", "value"],
                        &[vec![
                            key.clone(),
                            v.is_some().to_string(),
                            shown.clone().unwrap_or_default(),
                        ]],
                    ),
                    _ => vec![shown.clone().unwrap_or_else(|| out.null_repr.clone())],
                },
            );
            if *strict && v.is_none() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Command::Multiget {
            keys,
            routing_context: rc,
        } => {
            let parsed: Vec<Key> = if keys.len() == 1 && keys[0] == "-" {
                stdin_keys(enc, ctx.key_format)?
            } else {
                keys.iter()
                    .map(|k| Ok(enc.parse_key(k.as_bytes(), ctx.key_format)?))
                    .collect::<Result<_>>()?
            };
            let refs: Vec<_> = parsed.iter().map(Key::as_key_ref).collect();
            let ctxv = routing_context(rc, &reader, &columns)?;
            let results = reader.multi_get_with_context(&refs, ctxv.as_ref()).await?;
            let mut items = Vec::with_capacity(results.len());
            let mut rows = Vec::with_capacity(results.len());
            for (k, v) in &results {
                let shown = key_json(k).to_string();
                let shown = shown.trim_matches('"');
                let mut m = rec(vec![("key", key_json(k)), ("found", json!(v.is_some()))]);
                if let Some(b) = v {
                    m.insert("value".into(), out.value_json(shown, b)?);
                }
                rows.push(vec![
                    shown.to_owned(),
                    v.is_some().to_string(),
                    v.as_ref()
                        .map(|b| out.value_text(shown, b))
                        .transpose()?
                        .unwrap_or_else(|| out.null_repr.clone()),
                ]);
                items.push(m);
            }
            if out.format == Format::Jsonl {
                // One line per key, in input order (first occurrence).
                for mut m in items {
                    m.insert("op".into(), json!("multiget"));
                    out.record(&m, Vec::new);
                }
            } else {
                out.record(
                    &rec(vec![
                        ("op", json!("multiget")),
                        (
                            "results",
                            Value::Array(items.into_iter().map(Value::Object).collect()),
                        ),
                    ]),
                    || match out.format {
                        Format::Table => table(&["key", "found", "value"], &rows),
                        _ => rows.iter().map(|r| format!("{}={}", r[0], r[2])).collect(),
                    },
                );
            }
            ExitCode::SUCCESS
        }
        Command::Info => {
            let i = reader.snapshot_info()?;
            let sh = &build.sharding;
            let mut fields = vec![
                ("run_id", json!(i.run_id)),
                ("num_dbs", json!(i.num_dbs)),
                ("row_count", json!(i.row_count)),
                ("key_col", json!(build.key_col)),
                ("key_encoding", json!(i.key_encoding.as_str())),
                ("sharding", json!(i.sharding.as_str())),
                ("hash_algorithm", json!(i.hash_algorithm)),
                ("created_at", json!(i.created_at.to_iso())),
                ("manifest_ref", json!(i.manifest_ref)),
            ];
            if let Some(e) = &sh.cel_expr {
                fields.push(("cel_expr", json!(e)));
            }
            if let Some(c) = &sh.cel_columns {
                fields.push((
                    "cel_columns",
                    json!(
                        c.iter()
                            .map(|(k, t)| (k.clone(), t.as_str()))
                            .collect::<BTreeMap<_, _>>()
                    ),
                ));
            }
            if let Some(v) = &sh.routing_values {
                // Categorical CEL: the token at position i routes to shard i.
                fields.push((
                    "routing_values",
                    Value::Array(
                        v.iter()
                            .enumerate()
                            .map(|(db, t)| match t {
                                shardyfusion::RoutingValue::Int(n) => {
                                    json!({"value": n, "db_id": db})
                                }
                                shardyfusion::RoutingValue::Str(s) => {
                                    json!({"value": s, "db_id": db})
                                }
                            })
                            .collect(),
                    ),
                ));
            }
            let text_of = |v: &Value| match v {
                Value::String(s) => s.clone(),
                Value::Array(items) => items
                    .iter()
                    .map(|t| format!("{} -> shard {}", t["value"], t["db_id"]))
                    .collect::<Vec<_>>()
                    .join(", "),
                other => other.to_string(),
            };
            let lines: Vec<Vec<String>> = fields
                .iter()
                .map(|(k, v)| vec![(*k).to_owned(), text_of(v)])
                .collect();
            let mut all = vec![("op", json!("info"))];
            all.extend(fields);
            out.record(&rec(all), || match out.format {
                Format::Table => table(&["field", "value"], &lines),
                _ => lines
                    .iter()
                    .map(|r| format!("{}: {}", r[0], r[1]))
                    .collect(),
            });
            ExitCode::SUCCESS
        }
        Command::Shards => {
            let details = reader.shard_details()?;
            let items: Vec<Value> = details
                .iter()
                .map(|d| json!({"db_id": d.db_id, "row_count": d.row_count, "min_key": opt_key_json(&d.min_key), "max_key": opt_key_json(&d.max_key), "db_url": d.db_url}))
                .collect();
            out.record(
                &rec(vec![
                    ("op", json!("shards")),
                    ("shards", Value::Array(items)),
                ]),
                || match out.format {
                    Format::Table => table(
                        &["db_id", "rows", "min", "max", "db_url"],
                        &details
                            .iter()
                            .map(|d| {
                                vec![
                                    d.db_id.to_string(),
                                    d.row_count.to_string(),
                                    opt_key_json(&d.min_key).to_string(),
                                    opt_key_json(&d.max_key).to_string(),
                                    d.db_url.clone().unwrap_or_default(),
                                ]
                            })
                            .collect::<Vec<_>>(),
                    ),
                    _ => details
                        .iter()
                        .map(|d| {
                            format!(
                                "db_id={} rows={} min={} max={}",
                                d.db_id,
                                d.row_count,
                                opt_key_json(&d.min_key),
                                opt_key_json(&d.max_key)
                            )
                        })
                        .collect(),
                },
            );
            ExitCode::SUCCESS
        }
        Command::Health {
            staleness_threshold,
        } => {
            let h = reader.health(staleness_threshold.map(Duration::from_secs_f64));
            let age = (h.manifest_age.as_secs_f64() * 10.0).round() / 10.0;
            out.record(
                &rec(vec![
                    ("op", json!("health")),
                    ("status", json!(h.status.as_str())),
                    ("manifest_ref", json!(h.manifest_ref)),
                    ("manifest_age_seconds", json!(age)),
                    ("num_shards", json!(h.num_shards)),
                    ("is_closed", json!(h.is_closed)),
                ]),
                || match out.format {
                    Format::Table => table(
                        &["status", "manifest_age_s", "shards"],
                        &[vec![
                            h.status.as_str().to_owned(),
                            age.to_string(),
                            h.num_shards.to_string(),
                        ]],
                    ),
                    _ => vec![format!(
                        "status={} manifest_age={age}s shards={}",
                        h.status.as_str(),
                        h.num_shards
                    )],
                },
            );
            match h.status {
                shardyfusion::reader_async::HealthStatus::Healthy => ExitCode::SUCCESS,
                shardyfusion::reader_async::HealthStatus::Degraded => ExitCode::from(1),
                shardyfusion::reader_async::HealthStatus::Unhealthy => ExitCode::from(2),
            }
        }
        Command::Route {
            key,
            routing_context: rc,
        } => {
            let k = enc.parse_key(key.as_bytes(), ctx.key_format)?;
            let ctxv = routing_context(rc, &reader, &columns)?;
            let db = reader.route_key(k.as_key_ref(), ctxv.as_ref())?;
            out.record(
                &rec(vec![
                    ("op", json!("route")),
                    ("key", key_json(&k)),
                    ("db_id", json!(db)),
                ]),
                || match out.format {
                    Format::Table => table(&["key", "db_id"], &[vec![key.clone(), db.to_string()]]),
                    _ => vec![format!("{key} -> shard {db}")],
                },
            );
            ExitCode::SUCCESS
        }
        Command::History { .. }
        | Command::Rollback { .. }
        | Command::Write(_)
        | Command::Exec { .. }
        | Command::Cleanup(_)
        | Command::Completions { .. }
        | Command::Man => ExitCode::SUCCESS,
    };
    reader.close();
    Ok(code)
}
