//! `cargo xtask bench`: the benchmark suite, as ratios against raw SlateDB on the same data in
//! the same run.
//!
//! * Writer throughput (`shardyfusion-writer/benches/write.rs`): each scenario in its own process
//!   so peak RSS is per scenario; 1,000,000 rows (8-byte keys, 100-byte values) by default,
//!   `--rows N` to change.
//! * Read path (`shardyfusion-reader/benches/read.rs`): hot get vs raw `DbReader`, `multi_get`
//!   vs a loop of gets, refresh at 8 vs 256 shards, requests per cold get.
//! * CEL per-row routing cost (`shardyfusion-cel/benches/eval.rs`, criterion), with `--cel`.
//! * Scale (`shardyfusion-writer/benches/scale.rs` and `shardy write`), with `--scale` alone:
//!   generated Parquet datasets of 2 M and 20 M rows into 64 shards, rows/s and peak RSS.
//! * The Python bindings and Spark (`pybench.rs`), with `--python` alone.

use std::path::Path;

use anyhow::{Context as _, Result, bail};

use crate::cargo;

struct Measured {
    scenario: String,
    secs: f64,
    rows_per_s: f64,
    rss_mib: f64,
}

fn run_scenario(root: &Path, scenario: &str, rows: u64) -> Result<Measured> {
    let dir = root.join("target/bench-data").join(scenario);
    let out = cargo()
        .args([
            "bench",
            "--quiet",
            "--locked",
            "-p",
            "shardyfusion-writer",
            "--bench",
            "write",
            "--",
            scenario,
            &rows.to_string(),
        ])
        .arg(&dir)
        .current_dir(root)
        .output()
        .context("running the write benchmark")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "benchmark {scenario} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let line = stdout
        .lines()
        .find(|l| l.starts_with("RESULT "))
        .with_context(|| format!("no RESULT line from {scenario}"))?;
    let f: Vec<&str> = line.split_whitespace().collect();
    Ok(Measured {
        scenario: f[1].to_owned(),
        secs: f[3].parse()?,
        rows_per_s: f[4].parse()?,
        rss_mib: f[5].parse()?,
    })
}

/// The read benchmark (`shardyfusion-reader/benches/read.rs`): one process, `METRIC` lines.
fn read_bench(root: &Path, rows: u64) -> Result<()> {
    println!("\nbench: read path on a {rows}-key, 8-shard snapshot");
    let out = cargo()
        .args([
            "bench",
            "--quiet",
            "--locked",
            "-p",
            "shardyfusion-reader",
            "--bench",
            "read",
            "--",
            &rows.to_string(),
        ])
        .current_dir(root)
        .output()
        .context("running the read benchmark")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "read benchmark failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let metric = |name: &str| -> f64 {
        stdout
            .lines()
            .filter_map(|l| l.strip_prefix("METRIC "))
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(f64::NAN)
    };
    println!("| metric | value | target |");
    println!("|---|---|---|");
    println!(
        "| hot get: ConcurrentShardedReader vs raw DbReader ({:.2} us vs {:.2} us) | {:.2}x | <= 1.15x |",
        metric("hot_get_us"),
        metric("raw_get_us"),
        metric("hot_get_ratio")
    );
    println!(
        "| multi_get of 1,000 random keys vs a loop of 1,000 gets ({:.2} ms vs {:.2} ms) | {:.2}x | <= 0.35x |",
        metric("multi_get_ms"),
        metric("get_loop_ms"),
        metric("multi_get_ratio")
    );
    println!(
        "| refresh at 256 vs 8 shards ({:.1} ms vs {:.1} ms) | {:.2}x | <= 2x |",
        metric("refresh_256_ms"),
        metric("refresh_8_ms"),
        metric("refresh_ratio")
    );
    println!(
        "| object-store requests per cold get after open | {:.2} | <= 1 |",
        metric("cold_get_requests")
    );
    Ok(())
}

/// Peak RSS (MiB) and wall time of a child process, its `/proc/<pid>/status` high-water mark
/// polled until it exits.
pub(crate) fn measure_child(cmd: &mut std::process::Command) -> Result<(f64, f64, String)> {
    let start = std::time::Instant::now();
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("starting the measured process")?;
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0.0f64;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status_path)
            && let Some(v) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        {
            peak_kib = peak_kib.max(v);
        }
        if child.try_wait()?.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "the measured process failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok((
        peak_kib / 1024.0,
        start.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

/// The newest bench binary `name-<hash>` in `target/release/deps`.
pub(crate) fn bench_binary(root: &Path, name: &str) -> Result<std::path::PathBuf> {
    let deps = root.join("target/release/deps");
    std::fs::read_dir(&deps)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{name}-")))
                && p.extension().is_none()
        })
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .with_context(|| format!("the {name} bench binary was not built"))
}

/// Build (release) what the scale and Python benches run: the `scale` bench (dataset
/// generator and library writer), the `read` bench (probes) and `shardy`.
pub(crate) fn build_scale_tools(root: &Path) -> Result<()> {
    crate::run_cmd(
        "build the scale and read benches and shardy (release)",
        cargo()
            .args(["build", "--release", "--locked"])
            .args(["-p", "shardyfusion-writer", "--bench", "scale"])
            .args(["-p", "shardyfusion-reader", "--bench", "read"])
            .args(["-p", "shardyfusion-cli", "--bin", "shardy"])
            .current_dir(root),
    )
}

/// `shardy write` (release) of a scale dataset (`id` keys, `payload` values) into `num_dbs`
/// shards at `out`.
pub(crate) fn shardy_write(
    root: &Path,
    data: &Path,
    out: &Path,
    num_dbs: u32,
) -> std::process::Command {
    let mut c = std::process::Command::new(root.join("target/release/shardy"));
    c.args([
        "write",
        "--no-progress",
        "--key-col",
        "id",
        "--value-col",
        "payload",
    ])
    .args(["--num-dbs", &num_dbs.to_string(), "--parallel", "--input"])
    .arg(data)
    .arg("--prefix")
    .arg(out);
    c
}

/// `METRIC name value` from a bench's output.
pub(crate) fn metric(out: &str, name: &str) -> Result<f64> {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("METRIC {name} ")))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no METRIC {name} in:\n{out}"))
}

/// The scale scenario: generated Parquet datasets of 2, 20 and 40 M rows streamed into 64
/// shards, through the library and through `shardy write`; then reads of a 20 M-row build
/// (small memtable budget, so many flushes per shard) against a 1 M-row build.
fn scale_bench(root: &Path) -> Result<()> {
    println!("\nbench: scale (Parquet parts, 8-byte keys, 100-byte values, 64 shards)");
    build_scale_tools(root)?;
    let scale_bin = bench_binary(root, "scale")?;
    let read_bin = bench_binary(root, "read")?;
    let dataset = |rows: u64| -> Result<std::path::PathBuf> {
        let data = root.join(format!("target/bench-data/scale-{rows}"));
        if !data.join("part-00000.parquet").exists() {
            crate::run_cmd(
                "generate the dataset",
                std::process::Command::new(&scale_bin)
                    .arg("gen")
                    .arg(rows.to_string())
                    .arg(&data),
            )?;
        }
        Ok(data)
    };
    let out = root.join("target/bench-data/scale-out");
    let mut runs = Vec::new();
    println!(
        "| rows | library rows/s | library peak RSS | shardy write rows/s | shardy peak RSS |"
    );
    println!("|---|---|---|---|---|");
    for rows in [2_000_000u64, 20_000_000, 40_000_000] {
        let data = dataset(rows)?;
        let (rss, secs, _) = measure_child(
            std::process::Command::new(&scale_bin)
                .arg("write")
                .arg(&data)
                .arg(&out),
        )?;
        let lib = (rows as f64 / secs, rss);
        let _ = std::fs::remove_dir_all(&out);
        let (cli_rss, cli_secs, _) = measure_child(&mut shardy_write(root, &data, &out, 64))?;
        let _ = std::fs::remove_dir_all(&out);
        let cli = (rows as f64 / cli_secs, cli_rss);
        println!(
            "| {rows} | {:.0} | {:.0} MiB | {:.0} | {:.0} MiB |",
            lib.0, lib.1, cli.0, cli.1
        );
        runs.push((lib, cli));
    }

    // Reads: a 20 M-row build with a 64 MiB memtable budget (each shard flushes ~80 L0 SSTs),
    // compacted (the default) and not, against a 1 M-row build.
    let mut probes = Vec::new();
    for (rows, env) in [
        (1_000_000u64, vec![]),
        (20_000_000, vec![("SCALE_BUDGET_MIB", "64")]),
        (
            20_000_000,
            vec![("SCALE_BUDGET_MIB", "64"), ("SCALE_NO_COMPACT", "1")],
        ),
    ] {
        let data = dataset(rows)?;
        let snap = root.join("target/bench-data/scale-probe");
        let _ = std::fs::remove_dir_all(&snap);
        let (_, secs, _) = measure_child(
            std::process::Command::new(&scale_bin)
                .arg("write")
                .arg(&data)
                .arg(&snap)
                .env("SCALE_KEEP", "1")
                .envs(env.iter().copied()),
        )?;
        let (_, _, text) = measure_child(
            std::process::Command::new(&read_bin)
                .arg("probe")
                .arg(&snap)
                .arg(rows.to_string()),
        )?;
        let _ = std::fs::remove_dir_all(&snap);
        probes.push((
            rows as f64 / secs,
            metric(&text, "probe_hot_get_us")?,
            metric(&text, "probe_cold_get_requests")?,
        ));
    }
    let (small, big, bigger) = (runs[0], runs[1], runs[2]);
    let (p1, p20, p20raw) = (probes[0], probes[1], probes[2]);
    println!();
    println!("| metric | value | target |");
    println!("|---|---|---|");
    println!(
        "| library peak RSS, 20 M vs 2 M rows | {:.2}x | <= 1.15x (2 M rows end before the 64 memtables fill: see 40 M vs 20 M) |",
        big.0.1 / small.0.1
    );
    println!(
        "| library peak RSS, 40 M vs 20 M rows | {:.2}x | <= 1.15x (bounded) |",
        bigger.0.1 / big.0.1
    );
    println!(
        "| library rows/s, 40 M vs 20 M rows | {:.2}x | >= 0.9x (restated: steady once shards outgrow their memtable share) |",
        bigger.0.0 / big.0.0
    );
    println!(
        "| library rows/s, 20 M vs 2 M rows | {:.2}x | reference: 2 M-row shards fit one memtable and skip the compaction a 20 M-row build pays |",
        big.0.0 / small.0.0
    );
    println!(
        "| shardy write peak RSS, 20 M vs 2 M rows | {:.2}x | <= 1.15x |",
        big.1.1 / small.1.1
    );
    println!(
        "| shardy write peak RSS, 40 M vs 20 M rows | {:.2}x | <= 1.15x (bounded) |",
        bigger.1.1 / big.1.1
    );
    println!(
        "| shardy write peak RSS at 20 M rows | {:.0} MiB | < 1536 MiB |",
        big.1.1
    );
    println!(
        "| shardy write rows/s vs library, 20 M rows | {:.2}x | >= 0.8x |",
        big.1.0 / big.0.0
    );
    println!(
        "| hot get, 20 M-row build (64 MiB budget) vs 1 M-row build ({:.2} us vs {:.2} us) | {:.2}x | <= 1.2x |",
        p20.1,
        p1.1,
        p20.1 / p1.1
    );
    println!(
        "| requests per cold get, 20 M-row build | {:.2} | <= 1.1 |",
        p20.2
    );
    println!(
        "| same build without compaction: hot get, requests per cold get, rows/s vs compacted | {:.2} us, {:.2}, {:.2}x | (reference) |",
        p20raw.1,
        p20raw.2,
        p20raw.0 / p20.0
    );
    Ok(())
}

/// Run the suite and print the table.
pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    if args.iter().any(|a| a == "--scale") {
        return scale_bench(root);
    }
    if args.iter().any(|a| a == "--python") {
        return crate::pybench::run(root);
    }
    let rows: u64 = args
        .iter()
        .position(|a| a == "--rows")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.parse())
        .transpose()
        .context("--rows takes a number")?
        .unwrap_or(1_000_000);
    println!("bench: building (release) and running the write scenarios with {rows} rows");
    let mut m = Vec::new();
    for s in [
        "baseline",
        "writer",
        "writer_arrow",
        "rowwise_arrow",
        "writer_arrow_null",
        "rowwise_arrow_null",
        "writer_lowmem",
        "bulk_single",
        "put_loop",
    ] {
        let r = run_scenario(root, s, rows)?;
        println!(
            "  {:<18} {:>8.3} s {:>10.0} rows/s  peak RSS {:>7.1} MiB",
            r.scenario, r.secs, r.rows_per_s, r.rss_mib
        );
        m.push(r);
    }
    let get = |name: &str| {
        m.iter()
            .find(|r| r.scenario == name)
            .map(|r| r.rows_per_s)
            .unwrap_or(f64::NAN)
    };
    let rss = |name: &str| {
        m.iter()
            .find(|r| r.scenario == name)
            .map(|r| r.rss_mib)
            .unwrap_or(f64::NAN)
    };
    println!();
    println!("| metric | value | target |");
    println!("|---|---|---|");
    println!(
        "| writer vs plain put loop (throughput ratio) | {:.2}x | >= 8x |",
        get("writer") / get("put_loop")
    );
    println!(
        "| columnar write_arrow vs the same batches a row at a time (throughput ratio) | {:.2}x | >= 1.2x |",
        get("writer_arrow") / get("rowwise_arrow")
    );
    println!(
        "| the same with shards that drop their rows (the writer's own cost) | {:.2}x | >= 1.2x (restated) |",
        get("writer_arrow_null") / get("rowwise_arrow_null")
    );
    println!(
        "| columnar write_arrow vs the record writer (throughput ratio) | {:.2}x | reference |",
        get("writer_arrow") / get("writer")
    );
    println!(
        "| writer vs hand-tuned single SlateDB (throughput ratio) | {:.2}x | >= 0.9x |",
        get("writer") / get("bulk_single")
    );
    println!(
        "| writer peak RSS over the input's own RSS | {:.0} MiB | bounded by caps |",
        rss("writer") - rss("baseline")
    );
    println!(
        "| writer (16 MiB in flight, 8 MiB memtables) peak RSS over input | {:.0} MiB | lower than default |",
        rss("writer_lowmem") - rss("baseline")
    );
    println!(
        "| hand-tuned single SlateDB peak RSS over input | {:.0} MiB | reference |",
        rss("bulk_single") - rss("baseline")
    );
    read_bench(root, rows)?;
    if args.iter().any(|a| a == "--cel") {
        crate::run_cmd(
            "cel eval bench",
            cargo()
                .args([
                    "bench",
                    "--locked",
                    "-p",
                    "shardyfusion-cel",
                    "--bench",
                    "eval",
                ])
                .current_dir(root),
        )?;
    }
    Ok(())
}
