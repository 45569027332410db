//! The `shardy` binary driven as a subprocess: every command, including the failing paths.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

mod inputs;
mod kill;
mod ux;

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("shardy-it-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn shardy() -> Command {
    let mut c = Command::cargo_bin("shardy").unwrap();
    c.env_remove("SHARDY_CURRENT")
        .env_remove("SHARDY_CONFIG")
        .env_remove("SHARDY_CREDENTIALS");
    c
}

fn jsonl(dir: &Path, n: usize) -> PathBuf {
    let path = dir.join("rows.jsonl");
    let regions = ["eu", "us", "ap"];
    let lines: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"id": {i}, "name": "user-{i}", "region": "{}"}}"#,
                regions[i % 3]
            )
        })
        .collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

/// `shardy write` of a JSONL file with `--value-col` into `num_dbs` shards; the result record.
fn write_jsonl(input: &Path, prefix: &Path, value_col: &str, num_dbs: u32) -> Value {
    ok_json(
        shardy()
            .args([
                "write",
                "--no-progress",
                "--key-col",
                "id",
                "--value-col",
                value_col,
                "--num-dbs",
                &num_dbs.to_string(),
                "--input",
            ])
            .arg(input)
            .arg("--prefix")
            .arg(prefix),
    )
}

/// Run, expect success, parse stdout as one JSON line.
fn ok_json(c: &mut Command) -> Value {
    let out = c.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "failed: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Run, expect exit `code`, and a one-line JSON error on stderr without a panic.
fn err_json(c: &mut Command, code: i32) -> Value {
    let out = c.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON error line: {stderr}"));
    serde_json::from_str(line).unwrap()
}

#[test]
fn write_then_every_read_command() {
    let dir = scratch("read");
    let input = jsonl(&dir, 500);
    let prefix = dir.join("snap");
    let current = format!("{}/_CURRENT", prefix.display());
    let w = ok_json(
        shardy()
            .args([
                "write",
                "--no-progress",
                "--key-col",
                "id",
                "--value-json-cols",
                "--num-dbs",
                "4",
                "--input",
            ])
            .arg(&input)
            .arg("--prefix")
            .arg(&prefix),
    );
    assert_eq!(
        (
            w["op"].as_str(),
            w["rows_written"].as_u64(),
            w["num_dbs"].as_u64()
        ),
        (Some("write"), Some(500), Some(4))
    );

    let g = ok_json(shardy().args([
        "--current-url",
        &current,
        "--output-format",
        "jsonl",
        "get",
        "42",
    ]));
    assert_eq!(g["found"], true);
    use base64::Engine as _;
    let value = base64::engine::general_purpose::STANDARD
        .decode(g["value"].as_str().unwrap())
        .unwrap();
    assert_eq!(value, br#"{"name":"user-42","region":"eu"}"#);
    // A missing key's value is JSON null; --strict exits 1.
    let g = ok_json(shardy().args(["--current-url", &current, "get", "9999"]));
    assert_eq!(
        (g["found"].as_bool(), g["value"].is_null()),
        (Some(false), true)
    );
    assert_eq!(
        shardy()
            .args(["--current-url", &current, "get", "9999", "--strict"])
            .output()
            .unwrap()
            .status
            .code(),
        Some(1)
    );

    let m = ok_json(shardy().args([
        "--current-url",
        &current,
        "--output-format",
        "json",
        "multiget",
        "1",
        "2",
        "9999",
        "1",
    ]));
    let results = m["results"].as_array().unwrap();
    assert_eq!(results.len(), 3, "duplicates collapse");
    assert_eq!(results[2]["found"], false);
    let out = shardy()
        .args([
            "--current-url",
            &current,
            "--output-format",
            "text",
            "multiget",
            "-",
        ])
        .write_stdin("3\n4\n")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.starts_with("3="), "{text}");

    let info = ok_json(shardy().args(["--current-url", &current, "info"]));
    assert_eq!(
        (
            info["num_dbs"].as_u64(),
            info["row_count"].as_u64(),
            info["key_encoding"].as_str()
        ),
        (Some(4), Some(500), Some("u64be"))
    );
    let shards = ok_json(shardy().args(["--current-url", &current, "shards"]));
    assert_eq!(shards["shards"].as_array().unwrap().len(), 4);
    assert!(
        shards["shards"][0]["db_url"]
            .as_str()
            .unwrap()
            .starts_with("file:///")
    );
    let route = ok_json(shardy().args(["--current-url", &current, "route", "42"]));
    assert!(route["db_id"].as_u64().unwrap() < 4);
    let health = ok_json(shardy().args([
        "--current-url",
        &current,
        "health",
        "--staleness-threshold",
        "3600",
    ]));
    assert_eq!(health["status"], "healthy");
    assert_eq!(
        shardy()
            .args([
                "--current-url",
                &current,
                "health",
                "--staleness-threshold",
                "0"
            ])
            .output()
            .unwrap()
            .status
            .code(),
        Some(1),
        "degraded exits 1"
    );
    let table = shardy()
        .args([
            "--current-url",
            &current,
            "--output-format",
            "table",
            "shards",
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8(table.stdout)
            .unwrap()
            .starts_with("db_id  rows")
    );

    // A second publish, then history, pinning and rollback.
    let w2 = write_jsonl(&input, &prefix, "name", 2);
    let h = ok_json(shardy().args(["--current-url", &current, "history"]));
    let manifests = h["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 2);
    assert_eq!(manifests[0]["run_id"], w2["run_id"]);
    let pinned = ok_json(shardy().args(["--current-url", &current, "--offset", "1", "info"]));
    assert_eq!(
        pinned["run_id"], w["run_id"],
        "--offset pins without moving the pointer"
    );
    assert_eq!(
        ok_json(shardy().args(["--current-url", &current, "info"]))["run_id"],
        w2["run_id"]
    );
    let out = shardy()
        .args([
            "--current-url",
            &current,
            "rollback",
            "--run-id",
            w["run_id"].as_str().unwrap(),
        ])
        .output()
        .unwrap();
    let rolled: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (rolled["op"].as_str(), rolled["direction"].as_str()),
        (Some("rollback"), Some("back"))
    );
    assert_eq!(
        ok_json(shardy().args(["--current-url", &current, "info"]))["run_id"],
        w["run_id"]
    );
    let r2 = w2["manifest_ref"].as_str().unwrap();
    assert!(
        shardy()
            .args(["--current-url", &current, "rollback", "--ref", r2])
            .output()
            .unwrap()
            .status
            .success()
    );
    assert_eq!(
        ok_json(shardy().args(["--current-url", &current, "info"]))["run_id"],
        w2["run_id"]
    );
    let e = err_json(shardy().args(["--current-url", &current, "rollback"]), 1);
    assert!(e["error"].as_str().unwrap().contains("exactly one"), "{e}");
    let e = err_json(
        shardy().args(["--current-url", &current, "--offset", "7", "info"]),
        1,
    );
    assert!(e["error"].as_str().unwrap().contains("out of range"), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn csv_utf8_keys_and_cel_routing_context() {
    let dir = scratch("cel");
    let csv = dir.join("rows.csv");
    std::fs::write(
        &csv,
        "user,region,score\nalice,eu,1\nbob,us,2\ncarol,eu,3\n",
    )
    .unwrap();
    let prefix = dir.join("snap");
    let current = format!("{}/_CURRENT", prefix.display());
    let w = ok_json(
        shardy()
            .args([
                "write",
                "--no-progress",
                "--key-col",
                "user",
                "--value-col",
                "score",
                "--key-encoding",
                "utf8",
                "--cel-by-columns",
                "region",
                "--input",
            ])
            .arg(&csv)
            .arg("--prefix")
            .arg(&prefix),
    );
    assert_eq!(w["num_dbs"], 2, "categorical, inferred: eu and us");
    let g = ok_json(shardy().args([
        "--current-url",
        &current,
        "--output-format",
        "json",
        "get",
        "bob",
        "--routing-context",
        "region=us",
    ]));
    assert_eq!(g["found"], true);
    let g = ok_json(shardy().args([
        "--current-url",
        &current,
        "get",
        "bob",
        "--routing-context",
        "region=zz",
    ]));
    assert_eq!(g["found"], false, "unknown categorical token is a miss");
    let e = err_json(
        shardy().args([
            "--current-url",
            &current,
            "route",
            "bob",
            "--routing-context",
            "region=zz",
        ]),
        1,
    );
    assert_eq!(e["error_type"], "ShardAssignment", "{e}");
    let e = err_json(shardy().args(["--current-url", &current, "get", "bob"]), 1);
    assert!(
        e["error"].as_str().unwrap().contains("routing_context"),
        "{e}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn errors_are_one_clear_line() {
    let dir = scratch("errors");
    let current = format!("{}/nothing/_CURRENT", dir.display());
    let e = err_json(shardy().args(["--current-url", &current, "info"]), 1);
    assert_eq!(e["error_type"], "ReaderState");
    assert!(
        e["error"].as_str().unwrap().contains(&format!(
            "no snapshot pointer at {current}: nothing has been published there"
        )),
        "{e}"
    );
    let e = err_json(
        shardy().args(["--current-url", "gs://bucket/p/_CURRENT", "info"]),
        1,
    );
    assert!(
        e["error"].as_str().unwrap().contains("unsupported scheme"),
        "{e}"
    );
    let e = err_json(shardy().args(["info"]), 1);
    assert!(
        e["error"].as_str().unwrap().contains("--current-url"),
        "{e}"
    );
    let e = err_json(
        shardy().args([
            "--current-url",
            "s3://bucket/p/_CURRENT",
            "--s3-option",
            "endpoint_url=http://127.0.0.1:9",
            "--s3-option",
            "max_attempts=1",
            "--s3-option",
            "connect_timeout=1",
            "info",
        ]),
        1,
    );
    assert!(
        e["error_type"] == "S3Transient" || e["error_type"] == "ManifestStore",
        "{e}"
    );
    // health reports an unreachable store as unhealthy (exit 2) on stdout.
    let out = shardy()
        .args([
            "--current-url",
            "s3://bucket/p/_CURRENT",
            "--s3-option",
            "max_attempts=1",
            "--s3-option",
            "connect_timeout=1",
            "health",
        ])
        .env("SLATEDB_S3_ENDPOINT_URL", "http://127.0.0.1:9")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let h: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(h["status"], "unhealthy", "{h}");
    // A key that does not fit the encoding.
    let input = jsonl(&dir, 10);
    let prefix = dir.join("snap");
    write_jsonl(&input, &prefix, "name", 2);
    let e = err_json(
        shardy().args([
            "--current-url",
            &format!("{}/_CURRENT", prefix.display()),
            "get",
            "-5",
        ]),
        1,
    );
    assert!(e["error"].as_str().unwrap().contains("-5"), "{e}");
    // Bad write input.
    std::fs::write(dir.join("bad.jsonl"), "{\"id\": 1}\nnot json\n").unwrap();
    let e = err_json(
        shardy()
            .args([
                "write",
                "--key-col",
                "id",
                "--value-col",
                "name",
                "--num-dbs",
                "2",
                "--input",
            ])
            .arg(dir.join("bad.jsonl"))
            .arg("--prefix")
            .arg(&prefix),
        1,
    );
    assert!(e["error"].as_str().unwrap().contains("line 2"), "{e}");
    let e = err_json(
        shardy()
            .args(["write", "--key-col", "id", "--value-col", "name", "--input"])
            .arg(&input)
            .arg("--prefix")
            .arg(&prefix),
        1,
    );
    assert!(e["error"].as_str().unwrap().contains("--num-dbs"), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn config_files_choose_the_store_and_warn_on_open_credentials() {
    let dir = scratch("config");
    let input = jsonl(&dir, 20);
    let db = dir.join("manifests.db");
    let cfg = dir.join("reader.toml");
    std::fs::write(&cfg, format!("[manifest_store]\nbackend = \"sqlite\"\npath = \"{}\"\n\n[output]\nvalue_encoding = \"utf8\"\n", db.display())).unwrap();
    let prefix = dir.join("snap");
    ok_json(
        shardy()
            .arg("--config")
            .arg(&cfg)
            .args([
                "write",
                "--no-progress",
                "--key-col",
                "id",
                "--value-col",
                "name",
                "--num-dbs",
                "2",
                "--input",
            ])
            .arg(&input)
            .arg("--prefix")
            .arg(&prefix),
    );
    let g = ok_json(shardy().arg("--config").arg(&cfg).args(["get", "7"]));
    assert_eq!(g["value"], "user-7", "utf8 value encoding from [output]");
    assert!(db.exists());
    let creds = dir.join("credentials.toml");
    std::fs::write(
        &creds,
        "[default]\naccess_key_id = \"AKIA\"\nsecret_access_key = \"s3cret\"\n",
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let out = shardy()
        .arg("--config")
        .arg(&cfg)
        .arg("--credentials")
        .arg(&creds)
        .args(["info"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("readable by group or others"), "{stderr}");
    assert!(!stderr.contains("s3cret") && !String::from_utf8_lossy(&out.stdout).contains("s3cret"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn exec_scripts_and_the_repl() {
    let dir = scratch("batch");
    let input = jsonl(&dir, 50);
    let prefix = dir.join("snap");
    let current = format!("{}/_CURRENT", prefix.display());
    let w1 = write_jsonl(&input, &prefix, "name", 2);
    let w2 = write_jsonl(&input, &prefix, "region", 3);

    // A batch script: one record per command, errors in the same stream; on_error continue.
    let script = dir.join("script.yaml");
    std::fs::write(
        &script,
        "on_error: continue\ncommands:\n  - op: get\n    key: 7\n  - op: multiget\n    keys: [1, 2, 1]\n  - op: get\n    key: nope\n  - op: info\n  - op: history\n    limit: 5\n  - op: refresh\n  - op: route\n    key: 3\n",
    )
    .unwrap();
    let out_file = dir.join("out.jsonl");
    let out = shardy()
        .args([
            "--current-url",
            &current,
            "--output-format",
            "json",
            "exec",
            "--script",
        ])
        .arg(&script)
        .arg("--output")
        .arg(&out_file)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed command makes exec exit 1"
    );
    let records: Vec<Value> = std::fs::read_to_string(&out_file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ops: Vec<&str> = records.iter().map(|r| r["op"].as_str().unwrap()).collect();
    assert_eq!(
        ops,
        [
            "get", "multiget", "multiget", "get", "info", "history", "refresh", "route"
        ],
        "JSONL: one line per multiget key"
    );
    assert!(
        records[3]["error"]
            .as_str()
            .unwrap()
            .contains("not an integer")
    );
    assert_eq!(
        (records[1]["key"].as_i64(), records[2]["key"].as_i64()),
        (Some(1), Some(2))
    );
    // on_error: stop (the default) stops at the first failure.
    std::fs::write(
        &script,
        "commands:\n  - op: get\n    key: nope\n  - op: info\n",
    )
    .unwrap();
    let out = shardy()
        .args(["--current-url", &current, "exec", "--script"])
        .arg(&script)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 1);
    std::fs::write(&script, "commands: 3\n").unwrap();
    let e = err_json(
        shardy()
            .args(["--current-url", &current, "exec", "--script"])
            .arg(&script),
        1,
    );
    assert!(e["error"].as_str().unwrap().contains("commands"), "{e}");

    // The REPL: banner, pinning with `use` (never moves _CURRENT), quit.
    let session = format!(
        "info\nuse --offset 1\ninfo\nuse --latest\nget 3\nuse --ref {}\ninfo\nbogus\nquit\n",
        w2["manifest_ref"].as_str().unwrap()
    );
    let out = shardy()
        .args(["--current-url", &current, "--output-format", "jsonl"])
        .write_stdin(session)
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "Loaded manifest run_id={} (3 shards, hash sharding)",
            w2["run_id"].as_str().unwrap()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("shardy> "));
    assert!(stderr.contains(r#""op":"bogus""#), "{stderr}");
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["run_id"], w2["run_id"]);
    assert_eq!(
        lines[1]["run_id"], w1["run_id"],
        "use --offset 1 pins the older manifest"
    );
    assert_eq!(lines[2]["op"], "get");
    assert_eq!(lines[3]["run_id"], w2["run_id"]);
    assert_eq!(
        ok_json(shardy().args(["--current-url", &current, "info"]))["run_id"],
        w2["run_id"],
        "_CURRENT never moved"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn cleanup_stale_attempts_and_old_runs() {
    let dir = scratch("cleanup");
    let input = jsonl(&dir, 40);
    let prefix = dir.join("snap");
    let current = format!("{}/_CURRENT", prefix.display());
    let w1 = write_jsonl(&input, &prefix, "name", 2);
    let w2 = write_jsonl(&input, &prefix, "name", 2);
    // A leftover failed attempt of the current run.
    let stale = prefix.join(format!(
        "shards/run_id={}/db=00000/attempt=01",
        w2["run_id"].as_str().unwrap()
    ));
    std::fs::create_dir_all(stale.join("compacted")).unwrap();
    std::fs::write(stale.join("compacted/x.sst"), b"junk").unwrap();

    let dry = ok_json(shardy().args(["--current-url", &current, "cleanup", "--dry-run"]));
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["stale_attempts"].as_array().unwrap().len(), 1);
    assert!(
        stale.join("compacted/x.sst").exists(),
        "dry run deletes nothing"
    );

    let done = ok_json(shardy().args([
        "--current-url",
        &current,
        "cleanup",
        "--keep-last",
        "1",
        "--max-retries",
        "2",
    ]));
    assert_eq!(done["stale_attempts"][0]["objects_deleted"], 1);
    assert_eq!(done["old_runs"].as_array().unwrap().len(), 1);
    assert_eq!(done["old_runs"][0]["run_id"], w1["run_id"]);
    assert!(!stale.join("compacted/x.sst").exists());
    assert!(
        !prefix
            .join(format!("shards/run_id={}", w1["run_id"].as_str().unwrap()))
            .join("db=00000")
            .exists()
    );
    // The current snapshot still reads; manifests are kept.
    assert_eq!(
        ok_json(shardy().args(["--current-url", &current, "get", "5"]))["found"],
        true
    );
    assert_eq!(
        ok_json(shardy().args(["--current-url", &current, "history"]))["manifests"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let e = err_json(
        shardy().args(["--current-url", &current, "cleanup", "--older-than", "3w"]),
        1,
    );
    assert!(e["error"].as_str().unwrap().contains("--older-than"), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn cleanup_keeps_runs_a_writer_still_holds() {
    let dir = scratch("cleanup-lease");
    let input = jsonl(&dir, 20);
    let prefix = dir.join("snap");
    let current = format!("{}/_CURRENT", prefix.display());
    write_jsonl(&input, &prefix, "name", 2);
    // Two unpublished runs with shard data: one whose writer still holds its lease, one whose
    // lease ran out (a crashed writer).
    let future = "2999-01-01T00:00:00.000000Z";
    let past = "2001-01-01T00:00:00.000000Z";
    for (id, lease) in [("live", future), ("crashed", past)] {
        let record = prefix.join(format!(
            "runs/2026-12-01T00:00:00.000000Z_run_id={id}_0123456789abcdef0123456789abcdef"
        ));
        std::fs::create_dir_all(&record).unwrap();
        std::fs::write(
            record.join("run.yaml"),
            format!("lease_expires_at: '{lease}'\nrun_id: {id}\nstatus: running\n"),
        )
        .unwrap();
        let shard = prefix.join(format!("shards/run_id={id}/db=00000/attempt=00/compacted"));
        std::fs::create_dir_all(&shard).unwrap();
        std::fs::write(shard.join("x.sst"), b"partial").unwrap();
    }
    let out = shardy()
        .args(["--current-url", &current, "cleanup", "--include-old-runs"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done: Value = serde_json::from_slice(&out.stdout).unwrap();
    let removed: Vec<&str> = done["old_runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(removed, ["crashed"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("run live is still running"));
    assert!(
        prefix
            .join("shards/run_id=live/db=00000/attempt=00/compacted/x.sst")
            .exists()
    );
    assert!(!prefix.join("shards/run_id=crashed/db=00000").exists());
    assert!(
        prefix.join("runs").exists(),
        "run records are never deleted"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn parquet_input() {
    use std::sync::Arc;
    let dir = scratch("parquet");
    let ids: arrow_array::ArrayRef = Arc::new(arrow_array::Int64Array::from(vec![10, 20, 30]));
    let names: arrow_array::ArrayRef = Arc::new(arrow_array::StringArray::from(vec![
        "ten", "twenty", "thirty",
    ]));
    let batch = arrow_array::RecordBatch::try_from_iter([("id", ids), ("name", names)]).unwrap();
    let path = dir.join("rows.parquet");
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(&path).unwrap(),
        batch.schema(),
        None,
    )
    .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let prefix = dir.join("snap");
    let r = ok_json(
        shardy()
            .args([
                "write",
                "--no-progress",
                "--key-col",
                "id",
                "--value-json-cols",
                "name",
                "--num-dbs",
                "2",
                "--input",
            ])
            .arg(&path)
            .arg("--prefix")
            .arg(&prefix),
    );
    assert_eq!(r["rows_written"], 3);
    let g = ok_json(shardy().args([
        "--current-url",
        &format!("{}/_CURRENT", prefix.display()),
        "--output-format",
        "json",
        "get",
        "20",
    ]));
    use base64::Engine as _;
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(g["value"].as_str().unwrap())
            .unwrap(),
        br#"{"name":"twenty"}"#
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// The PostgreSQL manifest store chosen by `reader.toml` and `SHARDY_MANIFEST_DSN`.
#[test]
fn postgres_manifest_store_from_config() {
    let Some(dsn) = shardyfusion_store_conformance::server_env("DATABASE_URL") else {
        return;
    };
    let dir = scratch("pg");
    let input = jsonl(&dir, 30);
    let table = format!("shardy_cli_{}", std::process::id());
    let cfg = dir.join("reader.toml");
    std::fs::write(
        &cfg,
        format!("[manifest_store]\nbackend = \"postgres\"\ntable_name = \"{table}\"\n"),
    )
    .unwrap();
    let prefix = dir.join("snap");
    let w = ok_json(
        shardy()
            .env("SHARDY_MANIFEST_DSN", &dsn)
            .arg("--config")
            .arg(&cfg)
            .args([
                "write",
                "--no-progress",
                "--key-col",
                "id",
                "--value-col",
                "name",
                "--num-dbs",
                "3",
                "--input",
            ])
            .arg(&input)
            .arg("--prefix")
            .arg(&prefix),
    );
    let info = ok_json(
        shardy()
            .env("SHARDY_MANIFEST_DSN", &dsn)
            .arg("--config")
            .arg(&cfg)
            .arg("info"),
    );
    assert_eq!(info["run_id"], w["run_id"]);
    assert_eq!(
        info["manifest_ref"], w["run_id"],
        "database stores use the run id as the ref"
    );
    let g = ok_json(
        shardy()
            .env("SHARDY_MANIFEST_DSN", &dsn)
            .arg("--config")
            .arg(&cfg)
            .args(["get", "4"]),
    );
    assert_eq!(g["found"], true);
    let e = err_json(
        shardy()
            .env_remove("SHARDY_MANIFEST_DSN")
            .arg("--config")
            .arg(&cfg)
            .arg("info"),
        1,
    );
    assert!(
        e["error"].as_str().unwrap().contains("SHARDY_MANIFEST_DSN"),
        "{e}"
    );
    let mut c = postgres::Client::connect(&dsn, postgres::NoTls).unwrap();
    c.batch_execute(&format!(
        "DROP TABLE IF EXISTS {table}_shards; DROP TABLE IF EXISTS {table}_builds"
    ))
    .unwrap();
    c.execute(
        "DELETE FROM shardyfusion_pointer WHERE manifest_ref = $1",
        &[&w["run_id"].as_str().unwrap()],
    )
    .unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

/// A reused `--run-id` is refused with an error a person can act on, and the published
/// snapshot stays current; a copied snapshot reads from its copy; a shard URL outside the
/// store's directory is refused unless allowed with `--allow-url-prefix`.
#[test]
fn run_ids_are_used_once_and_urls_stay_inside_the_store() {
    let dir = scratch("trust");
    let input = jsonl(&dir, 200);
    let prefix = dir.join("snap");
    let write = |run_id: &str| {
        let mut c = shardy();
        c.args([
            "write",
            "--no-progress",
            "--key-col",
            "id",
            "--value-col",
            "name",
            "--num-dbs",
            "2",
            "--run-id",
            run_id,
            "--input",
        ])
        .arg(&input)
        .arg("--prefix")
        .arg(&prefix);
        c
    };
    ok_json(&mut write("nightly-1"));
    let pointer = std::fs::read(prefix.join("_CURRENT")).unwrap();
    let e = err_json(&mut write("nightly-1"), 1);
    let msg = e["error"].as_str().unwrap_or_default().to_owned()
        + e["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("already holds objects") && msg.contains("new run id"),
        "{e}"
    );
    assert_eq!(std::fs::read(prefix.join("_CURRENT")).unwrap(), pointer);
    let e = err_json(&mut write("bad/id"), 1);
    assert!(e.to_string().contains("run_id must be"), "{e}");

    // cp -r to another directory, remove the original: the copy reads from itself.
    let copy = dir.join("copy");
    copy_tree(&prefix, &copy);
    std::fs::remove_dir_all(&prefix).unwrap();
    let current = format!("{}/_CURRENT", copy.display());
    let g = ok_json(shardy().args([
        "--current-url",
        &current,
        "--output-format",
        "json",
        "get",
        "7",
    ]));
    assert_eq!(g["found"], true, "{g}");

    // Move the shards out of the store's directory and rewrite nothing: the manifest now names
    // URLs of the (gone) original, which lie outside `copy/`. Reading the original's path
    // without relocation would need it allowed: point the store at a sibling that holds only
    // the pointer and manifests, and the shard URLs (under copy/) are outside it.
    let sibling = dir.join("sibling");
    std::fs::create_dir_all(&sibling).unwrap();
    copy_tree(&copy.join("manifests"), &sibling.join("manifests"));
    std::fs::copy(copy.join("_CURRENT"), sibling.join("_CURRENT")).unwrap();
    let sib_current = format!("{}/_CURRENT", sibling.display());
    // Relocated to sibling/shards, which does not exist: a read error, not a silent read of copy/.
    let e = err_json(
        shardy().args(["--current-url", &sib_current, "get", "7"]),
        1,
    );
    assert!(e.to_string().contains("sibling"), "{e}");
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// `shardy write` streams part files: a directory and a glob of Parquet parts (row counts from
/// the footers drive --max-keys-per-shard), stdin JSONL, Parquet types written as JSON (never
/// debug text), and unknown columns refused before any row with the columns listed.
#[test]
fn streaming_inputs_parts_stdin_and_types() {
    use std::sync::Arc;
    let dir = scratch("stream");
    let parts = dir.join("parts");
    std::fs::create_dir_all(&parts).unwrap();
    for p in 0..3i64 {
        let ids: Vec<i64> = (p * 100..p * 100 + 100).collect();
        let ts: Vec<i64> = ids.iter().map(|i| 1_700_000_000_000_000 + i).collect();
        let batch = arrow_array::RecordBatch::try_from_iter([
            (
                "id",
                Arc::new(arrow_array::Int64Array::from(ids)) as arrow_array::ArrayRef,
            ),
            (
                "at",
                Arc::new(arrow_array::TimestampMicrosecondArray::from(ts).with_timezone("UTC"))
                    as arrow_array::ArrayRef,
            ),
        ])
        .unwrap();
        let path = parts.join(format!("part-{p:05}.parquet"));
        let mut w = parquet::arrow::ArrowWriter::try_new(
            std::fs::File::create(&path).unwrap(),
            batch.schema(),
            None,
        )
        .unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }
    std::fs::write(parts.join("_SUCCESS"), "").unwrap();
    let write = |input: &str, prefix: &Path, extra: &[&str]| {
        let mut c = shardy();
        c.args([
            "write",
            "--no-progress",
            "--key-col",
            "id",
            "--input",
            input,
        ])
        .arg("--prefix")
        .arg(prefix)
        .args(extra);
        c
    };
    // A directory: every part, max-keys-per-shard from the footers' row counts.
    let snap = dir.join("snap-dir");
    let r = ok_json(&mut write(
        parts.to_str().unwrap(),
        &snap,
        &["--value-json-cols", "at", "--max-keys-per-shard", "100"],
    ));
    assert_eq!(
        (r["rows_written"].as_u64(), r["num_dbs"].as_u64()),
        (Some(300), Some(3))
    );
    let g = ok_json(shardy().args([
        "--current-url",
        &format!("{}/_CURRENT", snap.display()),
        "--output-format",
        "json",
        "get",
        "205",
    ]));
    use base64::Engine as _;
    let v = base64::engine::general_purpose::STANDARD
        .decode(g["value"].as_str().unwrap())
        .unwrap();
    assert_eq!(v, br#"{"at":"2023-11-14T22:13:20.000205Z"}"#);

    // A glob naming one part.
    let glob = format!("{}/*1.parquet", parts.display());
    let r = ok_json(&mut write(
        &glob,
        &dir.join("snap-glob"),
        &["--value-col", "at", "--num-dbs", "2"],
    ));
    assert_eq!(r["rows_written"], 100);

    // stdin JSONL; --max-keys-per-shard cannot count stdin.
    let lines: String = (0..50)
        .map(|i| format!("{{\"id\": {i}, \"v\": \"x{i}\"}}\n"))
        .collect();
    let r = ok_json(
        write(
            "-",
            &dir.join("snap-stdin"),
            &[
                "--input-format",
                "jsonl",
                "--value-col",
                "v",
                "--num-dbs",
                "2",
            ],
        )
        .write_stdin(lines.clone()),
    );
    assert_eq!(r["rows_written"], 50);
    let e = err_json(
        write(
            "-",
            &dir.join("snap-x"),
            &[
                "--input-format",
                "jsonl",
                "--value-col",
                "v",
                "--max-keys-per-shard",
                "10",
            ],
        )
        .write_stdin(lines.clone()),
        1,
    );
    assert!(e["error"].as_str().unwrap().contains("--num-dbs"), "{e}");

    // A misspelled value column: refused before any row, the columns listed.
    let e = err_json(
        write(
            "-",
            &dir.join("snap-typo"),
            &[
                "--input-format",
                "jsonl",
                "--value-col",
                "vv",
                "--num-dbs",
                "2",
            ],
        )
        .write_stdin(lines),
        1,
    );
    let msg = e["error"].as_str().unwrap();
    assert!(
        msg.contains("\"vv\"") && msg.contains("[\"id\", \"v\"]"),
        "{e}"
    );
    assert!(!dir.join("snap-typo").join("_CURRENT").exists());

    // Bad rows are named by file and row: a null key (found by the writer) and a key that does
    // not fit the key encoding (found by the key cast), each in the second of two parts.
    let jparts = dir.join("jparts");
    std::fs::create_dir_all(&jparts).unwrap();
    std::fs::write(
        jparts.join("a.jsonl"),
        "{\"id\": 1, \"v\": \"a\"}\n{\"id\": 2, \"v\": \"b\"}\n",
    )
    .unwrap();
    for (second, want) in [
        (
            "{\"id\": 3, \"v\": \"c\"}\n{\"id\": null, \"v\": \"d\"}\n",
            "null",
        ),
        (
            "{\"id\": \"3\", \"v\": \"c\"}\n{\"id\": \"x\", \"v\": \"d\"}\n",
            "u64be",
        ),
    ] {
        std::fs::write(jparts.join("b.jsonl"), second).unwrap();
        let e = err_json(
            &mut write(
                jparts.to_str().unwrap(),
                &dir.join("snap-bad-row"),
                &["--value-col", "v", "--num-dbs", "2"],
            ),
            1,
        );
        let msg = e["error"].as_str().unwrap();
        assert!(
            msg.contains(&format!("{}, row 2", jparts.join("b.jsonl").display()))
                && msg.contains(want),
            "{e}"
        );
        assert!(!dir.join("snap-bad-row").join("_CURRENT").exists());
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// Repeated keys: counted in the result (the later row wins), or refused with
/// `--on-duplicate error`; `row_count` counts every row.
#[test]
fn repeated_keys_are_reported_or_refused() {
    let dir = scratch("dups");
    let lines: String = (0..30)
        .map(|i| format!("{{\"id\": {}, \"v\": \"x{i}\"}}\n", i % 10))
        .collect();
    let write = |prefix: &str, extra: &[&str]| {
        let mut c = shardy();
        c.args([
            "write",
            "--no-progress",
            "--key-col",
            "id",
            "--value-col",
            "v",
            "--num-dbs",
            "2",
            "--input-format",
            "jsonl",
            "--input",
            "-",
        ])
        .arg("--prefix")
        .arg(dir.join(prefix))
        .args(extra)
        .write_stdin(lines.clone());
        c
    };
    let r = ok_json(&mut write("keep", &[]));
    assert_eq!(
        (r["rows_written"].as_u64(), r["duplicate_keys"].as_u64()),
        (Some(30), Some(20))
    );
    let g = ok_json(shardy().args([
        "--current-url",
        &format!("{}/_CURRENT", dir.join("keep").display()),
        "--output-format",
        "json",
        "get",
        "3",
    ]));
    use base64::Engine as _;
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(g["value"].as_str().unwrap())
            .unwrap(),
        b"x23"
    );
    let e = err_json(&mut write("refuse", &["--on-duplicate", "error"]), 1);
    assert!(e["error"].as_str().unwrap().contains("repeats key"), "{e}");
    assert!(!dir.join("refuse").join("_CURRENT").exists());
    std::fs::remove_dir_all(dir).unwrap();
}
