//! `cargo xtask bench`: the benchmark suite, as ratios against raw SlateDB on the same data in
//! the same run.
//!
//! * Writer throughput (`shardyfusion-writer/benches/write.rs`): each scenario in its own process
//!   so peak RSS is per scenario; 1,000,000 rows (8-byte keys, 100-byte values) by default,
//!   `--rows N` to change.
//! * CEL per-row routing cost (`shardyfusion-cel/benches/eval.rs`, criterion), with `--cel`.

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

/// Run the suite and print the table.
pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
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
        "writer_lowmem",
        "bulk_single",
        "put_loop",
    ] {
        let r = run_scenario(root, s, rows)?;
        println!(
            "  {:<14} {:>8.3} s {:>10.0} rows/s  peak RSS {:>7.1} MiB",
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
