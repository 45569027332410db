//! `cargo xtask bench --python`: the Python bindings against the Rust figures of the same run:
//! a hot get through `shardyfusion_rs` vs the same get in Rust, `multi_get` with the GIL
//! released, and a Spark `local[2]` build vs `shardy write` of the same Parquet rows.

use std::path::Path;
use std::process::Command;

use anyhow::Result;

use crate::bench::{bench_binary, measure_child, metric, shardy_write};

const ROWS: u64 = 2_000_000;
const NUM_DBS: u32 = 8;

pub(crate) fn run(root: &Path) -> Result<()> {
    println!("bench: Python bindings (2,000,000 rows, 8-byte keys, 100-byte values, 8 shards)");
    crate::bench::build_scale_tools(root)?;
    let venv = crate::it::ensure_venv(root)?;
    crate::run_cmd(
        "maturin develop --release (shardyfusion_rs into the venv)",
        Command::new(venv.join("bin/maturin"))
            .args(["develop", "--release", "--quiet", "--manifest-path"])
            .arg(root.join("crates/shardyfusion-py/Cargo.toml"))
            .env("VIRTUAL_ENV", &venv)
            .env("PATH", crate::it::path_with(&venv.join("bin"))),
    )?;
    let scale = bench_binary(root, "scale")?;
    let read = bench_binary(root, "read")?;
    let data = root.join(format!("target/bench-data/scale-{ROWS}"));
    if !data.join("part-00000.parquet").exists() {
        crate::run_cmd(
            "generate the dataset",
            Command::new(&scale)
                .arg("gen")
                .arg(ROWS.to_string())
                .arg(&data),
        )?;
    }
    let python = venv.join("bin/python");
    let script = root.join("crates/shardyfusion-py/bench/bench.py");
    let snap = root.join("target/bench-data/py-shardy");
    let spark_snap = root.join("target/bench-data/py-spark");
    let _ = std::fs::remove_dir_all(&snap);
    let _ = std::fs::remove_dir_all(&spark_snap);
    let _ = std::fs::remove_dir_all(spark_snap.with_file_name("py-spark-warmup"));

    let (_, shardy_secs, _) = measure_child(&mut shardy_write(root, &data, &snap, NUM_DBS))?;
    let shardy_rate = ROWS as f64 / shardy_secs;
    let (_, _, spark) = measure_child(
        Command::new(&python)
            .arg(&script)
            .arg("spark")
            .arg(&data)
            .arg(&spark_snap)
            .arg(NUM_DBS.to_string()),
    )?;
    let spark_rate = metric(&spark, "spark_rows_per_s")?;
    let (_, _, rust) = measure_child(
        Command::new(&read)
            .arg("probe")
            .arg(&snap)
            .arg(ROWS.to_string()),
    )?;
    let (_, _, py) = measure_child(
        Command::new(&python)
            .arg(&script)
            .arg("get")
            .arg(&snap)
            .arg(ROWS.to_string()),
    )?;
    let rust_get = metric(&rust, "probe_hot_get_us")?;
    let py_get = metric(&py, "py_hot_get_us")?;
    println!();
    println!("| metric | value | target |");
    println!("|---|---|---|");
    println!(
        "| hot get through Python minus the same get in Rust ({py_get:.2} us vs {rust_get:.2} us) | {:.2} us | <= 2 us |",
        py_get - rust_get
    );
    println!(
        "| multi_get of 1,000 hot keys, one Python call | {:.2} ms | one call, GIL released |",
        metric(&py, "py_multi_get_1000_ms")?
    );
    println!(
        "| a pure-Python thread's progress during one multi_get of 50,000 keys ({:.0} ms), vs alone | {:.2} | > 0 (0 if the call held the GIL) |",
        metric(&py, "py_multi_get_50k_ms")?,
        metric(&py, "py_counter_progress_during_multi_get")?
    );
    println!(
        "| Spark local[2] build vs shardy write ({spark_rate:.0} vs {shardy_rate:.0} rows/s; {:.1} s, the first build on a cold JVM {:.1} s) | {:.2}x | >= 0.5x |",
        metric(&spark, "spark_total_s")?,
        metric(&spark, "spark_first_build_s")?,
        spark_rate / shardy_rate
    );
    Ok(())
}
