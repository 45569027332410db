//! Kill anywhere, lose nothing: `shardy write` is SIGKILLed at 34 moments picked from its own
//! metric events (`--events`), spread over routing, shard writes, the manifest PUT and the
//! pointer PUT, on a local directory and on the S3-compatible server. After every kill
//! `_CURRENT` names a whole snapshot (the previous one or the new one) whose every key reads
//! back with its value; then `shardy cleanup` deletes the dead runs' shard data and leaves
//! every published snapshot readable.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

use shardyfusion::reader::{ConcurrentOptions, ConcurrentShardedReader, ReaderOptions};
use shardyfusion::storage::StorageResolver;
use shardyfusion::{KeyRef, ManifestStore, S3ConnectionOptions, StaticCredentialProvider};
use shardyfusion_store_conformance::{s3_test_identity, s3_test_server, unique_name};

use crate::scratch;

/// The moments: (event, how many of it to see before the kill).
fn moments() -> Vec<(&'static str, usize)> {
    let mut m = vec![("write.started", 1)];
    m.extend((1..=4).map(|n| ("write.shard.started", n)));
    m.extend([1, 2, 3, 5, 8, 12, 16, 24, 32, 40].map(|n| ("write.batch_written", n)));
    m.extend((1..=8).map(|n| ("write.shard.completed", n)));
    m.extend([("write.shards_completed", 1); 3]);
    m.extend([("write.manifest_published", 1); 6]);
    m.extend([("write.current_published", 1); 2]);
    m
}

/// The phase a kill after `last` (the last event seen) interrupted.
fn phase(last: &str) -> &'static str {
    match last {
        "" | "write.started" | "write.shard.started" => "routing",
        "write.batch_written" | "write.shard.completed" => "shard writes",
        "write.shards_completed" => "manifest PUT",
        "write.manifest_published" => "pointer PUT",
        _ => "after the pointer",
    }
}

struct Target {
    prefix: String,
    /// A fresh resolver per reader, as the CLI and the Python bindings use: readers opened in
    /// turn over one shared resolver failed their first S3 request here (notes, §I).
    resolver: Box<dyn Fn() -> StorageResolver>,
    /// Extra `shardy` arguments and environment that reach the storage.
    args: Vec<String>,
    env: Vec<(String, String)>,
    rows: usize,
}

fn write_input(path: &Path, rows: usize, generation: usize) {
    let mut text = String::with_capacity(rows * 32);
    for i in 0..rows {
        text.push_str(&format!("{{\"id\":{i},\"v\":\"g{generation}:{i}\"}}\n"));
    }
    std::fs::write(path, text).unwrap();
}

fn store(t: &Target) -> Arc<dyn ManifestStore> {
    shardyfusion::manifest_store_with(&t.prefix, (t.resolver)()).unwrap()
}

/// The current snapshot's manifest ref and the generation its keys hold. `every` reads every
/// key (a snapshot seen for the first time); otherwise a spread sample of 2,000 (a snapshot
/// already read whole: published snapshots never change). A mixed or missing key fails.
fn current_snapshot(t: &Target, every: bool) -> (String, usize) {
    let reader = ConcurrentShardedReader::open(
        store(t),
        ReaderOptions::default().with_storage((t.resolver)()),
        ConcurrentOptions::default(),
    )
    .expect("the current snapshot opens");
    let info = reader.snapshot_info().unwrap();
    assert_eq!(info.row_count, t.rows as u64);
    let step = if every { 1 } else { (t.rows / 2_000).max(1) };
    let ids: Vec<i64> = (0..t.rows as i64).step_by(step).collect();
    let mut generations = BTreeMap::new();
    for chunk in ids.chunks(10_000) {
        let keys: Vec<KeyRef<'_>> = chunk.iter().map(|i| KeyRef::Int(*i)).collect();
        for (k, v) in reader.multi_get(&keys).expect("reads never fail") {
            let v = String::from_utf8(v.expect("every key reads back").to_vec()).unwrap();
            let (g, id) = v.split_once(':').unwrap();
            assert_eq!(
                shardyfusion::Key::Int(id.parse().unwrap()),
                k,
                "value of another key"
            );
            *generations
                .entry(g[1..].parse::<usize>().unwrap())
                .or_insert(0) += 1;
        }
    }
    reader.close();
    assert_eq!(
        generations.len(),
        1,
        "a snapshot mixes generations: {generations:?}"
    );
    (info.manifest_ref, *generations.keys().next().unwrap())
}

fn shardy_for(t: &Target) -> std::process::Command {
    let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("shardy"));
    c.args(&t.args)
        .env_remove("SHARDY_CURRENT")
        .env_remove("SHARDY_CONFIG")
        .env_remove("SHARDY_CREDENTIALS");
    for (k, v) in &t.env {
        c.env(k, v);
    }
    c
}

fn write_cmd(t: &Target, input: &Path) -> std::process::Command {
    let mut c = shardy_for(t);
    c.args([
        "write",
        "--no-progress",
        "--events",
        "--key-col",
        "id",
        "--value-col",
        "v",
    ])
    .args(["--num-dbs", "8", "--batch-size", "2000", "--input"])
    .arg(input)
    .args(["--prefix", &t.prefix]);
    c
}

/// Objects under the prefix's shard data.
fn count_shard_objects(t: &Target, rt: &tokio::runtime::Runtime) -> usize {
    use futures::TryStreamExt as _;
    let loc = (t.resolver)().resolve(&t.prefix).unwrap();
    let shards = loc.child(&["shards"]);
    rt.block_on(async { loc.store.list(Some(&shards)).try_collect::<Vec<_>>().await })
        .unwrap()
        .len()
}

/// A dead writer's lease runs out after its lease period (10 minutes): end it now by moving
/// `lease_expires_at` of every `running` run record into the past.
fn expire_dead_leases(t: &Target, rt: &tokio::runtime::Runtime) -> usize {
    use futures::TryStreamExt as _;
    use shardyfusion::storage::object_store::ObjectStoreExt as _;
    let loc = (t.resolver)().resolve(&t.prefix).unwrap();
    let runs = loc.child(&["runs"]);
    rt.block_on(async {
        let mut n = 0;
        let listed: Vec<_> = loc.store.list(Some(&runs)).try_collect().await.unwrap();
        for meta in listed {
            let bytes = loc
                .store
                .get(&meta.location)
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            let text = String::from_utf8(bytes.to_vec()).unwrap();
            if text.contains("status: running") {
                let expired: String = text
                    .lines()
                    .map(|l| {
                        if l.starts_with("lease_expires_at:") {
                            "lease_expires_at: \"2000-01-01T00:00:00Z\"".to_owned()
                        } else {
                            l.to_owned()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                loc.store
                    .put(&meta.location, expired.into_bytes().into())
                    .await
                    .unwrap();
                n += 1;
            }
        }
        n
    })
}

fn kill_anywhere(t: &Target, dir: &Path) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Generation 0, published whole.
    let input = dir.join("g0.jsonl");
    write_input(&input, t.rows, 0);
    let out = write_cmd(t, &input).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (mut current_ref, mut current) = current_snapshot(t, true);
    assert_eq!(current, 0);

    let mut hits: BTreeMap<&str, usize> = BTreeMap::new();
    let mut moved = 0;
    for (n, (event, nth)) in moments().into_iter().enumerate() {
        let generation = n + 1;
        let input = dir.join("input.jsonl");
        write_input(&input, t.rows, generation);
        let mut child = write_cmd(t, &input)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut last = String::new();
        let mut seen = 0;
        let mut killed = false;
        for line in BufReader::new(child.stderr.take().unwrap()).lines() {
            let Ok(line) = line else { break };
            let Ok(record) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let name = record["event"].as_str().unwrap_or_default().to_owned();
            if name == event {
                seen += 1;
                if seen == nth {
                    child.kill().unwrap();
                    killed = true;
                    last = name;
                    break;
                }
            }
            last = name;
        }
        let _ = child.wait();
        let phase = if killed {
            phase(&last)
        } else {
            "finished first"
        };
        *hits.entry(phase).or_insert(0) += 1;
        let (now_ref, _) = current_snapshot(t, false);
        let (now_ref, now) = current_snapshot(t, now_ref != current_ref);
        assert!(
            (now_ref == current_ref && now == current) || now == generation,
            "after a kill at {event} #{nth} _CURRENT names generation {now}, not {current} or {generation}"
        );
        moved += usize::from(now_ref != current_ref);
        (current_ref, current) = (now_ref, now);
    }
    eprintln!(
        "kill harness ({}): {} kills; phases hit: {hits:?}; pointer moved by {moved}",
        t.prefix,
        moments().len()
    );
    assert!(hits.get("routing").is_some_and(|n| *n > 0), "{hits:?}");
    assert!(
        hits.get("shard writes").is_some_and(|n| *n >= 10),
        "{hits:?}"
    );
    assert!(
        hits.get("manifest PUT").is_some_and(|n| *n > 0)
            || hits.get("pointer PUT").is_some_and(|n| *n > 0),
        "{hits:?}"
    );

    // Cleanup: the dead runs' shard data goes, every published snapshot stays readable.
    let expired = expire_dead_leases(t, &rt);
    let before = count_shard_objects(t, &rt);
    let out = shardy_for(t)
        .args([
            "--current-url",
            &format!("{}/_CURRENT", t.prefix),
            "cleanup",
            "--include-old-runs",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = count_shard_objects(t, &rt);
    eprintln!(
        "kill harness ({}): cleanup of {expired} dead runs: {before} shard objects before, {after} after",
        t.prefix
    );
    assert!(after < before, "cleanup deleted nothing: {before} objects");
    assert_eq!(
        current_snapshot(t, true),
        (current_ref, current),
        "cleanup touched the current snapshot"
    );
    let history = rt.block_on(store(t).list_manifests(100)).unwrap();
    for m in history {
        let pinned = ConcurrentShardedReader::open_pinned(
            store(t),
            &m.manifest_ref,
            ReaderOptions::default().with_storage((t.resolver)()),
            ConcurrentOptions::default(),
        )
        .expect("every published manifest still opens");
        assert!(
            pinned.get(KeyRef::Int(7)).unwrap().is_some(),
            "{}",
            m.manifest_ref
        );
        pinned.close();
    }
}

#[test]
fn kill_anywhere_on_a_local_directory() {
    let dir = scratch("kill-local");
    let t = Target {
        prefix: dir.join("snap").display().to_string(),
        resolver: Box::new(StorageResolver::default),
        args: Vec::new(),
        env: Vec::new(),
        rows: 200_000,
    };
    kill_anywhere(&t, &dir);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn kill_anywhere_on_s3() {
    let Some((endpoint, bucket)) = s3_test_server() else {
        return;
    };
    let (id, secret) = s3_test_identity();
    let opts = S3ConnectionOptions::new()
        .with_endpoint_url(&endpoint)
        .with_region("us-east-1")
        .with_addressing_style("path".parse().unwrap());
    let (rid, rsecret) = (id.clone(), secret.clone());
    let resolver = move || {
        StorageResolver::builder()
            .credential_provider(Arc::new(StaticCredentialProvider::new(
                rid.clone(),
                rsecret.clone(),
                None,
            )))
            .s3_options(opts.clone())
            .build()
    };
    let dir = scratch("kill-s3");
    let t = Target {
        prefix: format!("s3://{bucket}/{}", unique_name("kill")),
        resolver: Box::new(resolver),
        args: vec![
            "--s3-option".into(),
            format!("endpoint_url={endpoint}"),
            "--s3-option".into(),
            "region=us-east-1".into(),
            "--s3-option".into(),
            "addressing_style=path".into(),
        ],
        env: vec![
            ("AWS_ACCESS_KEY_ID".into(), id),
            ("AWS_SECRET_ACCESS_KEY".into(), secret),
        ],
        rows: 50_000,
    };
    kill_anywhere(&t, &dir);
    std::fs::remove_dir_all(dir).unwrap();
}
