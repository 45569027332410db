//! The run registry: one YAML record per run under `runs/`, rewritten in place as the run
//! moves from `running` to `succeeded` or `failed`, with a lease renewed by a heartbeat.
//! Failures here are logged, never returned.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use shardyfusion_core::{Timestamp, pyjson, run_record_dir, url_join};
use shardyfusion_storage::object_store::{ObjectStoreExt, PutPayload};
use shardyfusion_storage::{StorageResolver, StoreLocation};

const LEASE: Duration = Duration::from_secs(600);
const HEARTBEAT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
struct Record {
    run_id: String,
    status: &'static str,
    started_at: Timestamp,
    updated_at: Timestamp,
    lease_expires_at: Timestamp,
    s3_prefix: String,
    shard_prefix: String,
    db_path_template: String,
    manifest_ref: Option<String>,
    error_type: Option<String>,
    error_message: Option<String>,
}

impl Record {
    /// Sorted keys, block style, strings double-quoted (JSON escapes are valid YAML).
    fn to_yaml(&self) -> String {
        let q = |s: &str| pyjson::quote(s);
        let opt = |s: &Option<String>| s.as_deref().map_or_else(|| "null".to_owned(), q);
        format!(
            "db_path_template: {}\nerror_message: {}\nerror_type: {}\nformat_version: 1\nlease_expires_at: {}\n\
             manifest_ref: {}\nrun_id: {}\ns3_prefix: {}\nshard_prefix: {}\nstarted_at: {}\nstatus: {}\n\
             updated_at: {}\nwriter_type: rust\n",
            q(&self.db_path_template),
            opt(&self.error_message),
            opt(&self.error_type),
            q(&self.lease_expires_at.to_iso()),
            opt(&self.manifest_ref),
            q(&self.run_id),
            q(&self.s3_prefix),
            q(&self.shard_prefix),
            q(&self.started_at.to_iso()),
            self.status,
            q(&self.updated_at.to_iso()),
        )
    }
}

/// A live run record.
pub(crate) struct RunRegistry {
    loc: StoreLocation,
    record: Arc<Mutex<Record>>,
    heartbeat: Option<tokio::task::JoinHandle<()>>,
}

impl RunRegistry {
    /// Create the record (`running`) and start the heartbeat. `None` when the registry cannot
    /// be written (logged; the run goes on without it).
    pub(crate) async fn start(
        resolver: &StorageResolver,
        s3_prefix: &str,
        registry_prefix: &str,
        run_id: &str,
        shard_prefix: &str,
        db_path_template: &str,
    ) -> Option<RunRegistry> {
        let now = Timestamp::now();
        let dir = run_record_dir(
            &now.to_key_string(),
            run_id,
            &uuid::Uuid::new_v4().simple().to_string(),
        );
        let url = url_join(s3_prefix, &[registry_prefix, &dir, "run.yaml"]);
        let loc = match resolver.resolve(&url) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(%e, "run registry disabled for this run");
                return None;
            }
        };
        let record = Record {
            run_id: run_id.to_owned(),
            status: "running",
            started_at: now,
            updated_at: now,
            lease_expires_at: now.plus(LEASE),
            s3_prefix: s3_prefix.to_owned(),
            shard_prefix: shard_prefix.to_owned(),
            db_path_template: db_path_template.to_owned(),
            manifest_ref: None,
            error_type: None,
            error_message: None,
        };
        if let Err(e) = put(&loc, &record).await {
            tracing::warn!(error = %e, url = %loc.url, "cannot create the run record; registry disabled for this run");
            return None;
        }
        let record = Arc::new(Mutex::new(record));
        let (hb_loc, hb_rec) = (loc.clone(), record.clone());
        let heartbeat = tokio::spawn(async move {
            loop {
                tokio::time::sleep(HEARTBEAT).await;
                let snapshot = {
                    let mut r = hb_rec.lock().unwrap_or_else(|p| p.into_inner());
                    let now = Timestamp::now();
                    r.updated_at = now;
                    r.lease_expires_at = now.plus(LEASE);
                    r.clone()
                };
                if let Err(e) = put(&hb_loc, &snapshot).await {
                    tracing::warn!(error = %e, "run record heartbeat failed");
                }
            }
        });
        Some(RunRegistry {
            loc,
            record,
            heartbeat: Some(heartbeat),
        })
    }

    /// The URL of the record.
    pub(crate) fn url(&self) -> &str {
        &self.loc.url
    }

    /// Terminal transition: `succeeded` with the manifest ref, or `failed` with the error.
    pub(crate) async fn finish(
        mut self,
        manifest_ref: Option<&str>,
        error: Option<&shardyfusion_core::Error>,
    ) {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
        let snapshot = {
            let mut r = self.record.lock().unwrap_or_else(|p| p.into_inner());
            let now = Timestamp::now();
            r.updated_at = now;
            r.lease_expires_at = now;
            match error {
                None => {
                    r.status = "succeeded";
                    r.manifest_ref = manifest_ref.map(str::to_owned);
                }
                Some(e) => {
                    r.status = "failed";
                    r.error_type = Some(e.kind().name().to_owned());
                    r.error_message = Some(e.message().to_owned());
                }
            }
            r.clone()
        };
        if let Err(e) = put(&self.loc, &snapshot).await {
            tracing::warn!(error = %e, "cannot write the final run record");
        }
    }
}

impl Drop for RunRegistry {
    fn drop(&mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
    }
}

async fn put(loc: &StoreLocation, record: &Record) -> Result<(), String> {
    loc.store
        .put(&loc.path, PutPayload::from(record.to_yaml().into_bytes()))
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_is_sorted_block_style() {
        let t = Timestamp::parse("2026-01-01T00:00:00.5Z").unwrap();
        let r = Record {
            run_id: "abc".into(),
            status: "failed",
            started_at: t,
            updated_at: t,
            lease_expires_at: t,
            s3_prefix: "s3://b/p".into(),
            shard_prefix: "shards".into(),
            db_path_template: "db={db_id:05d}".into(),
            manifest_ref: None,
            error_type: Some("ShardWrite".into()),
            error_message: Some("disk \"full\"".into()),
        };
        let y = r.to_yaml();
        let keys: Vec<&str> = y.lines().map(|l| l.split(':').next().unwrap()).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert!(y.contains("error_message: \"disk \\\"full\\\"\"\n"), "{y}");
        assert!(y.contains("manifest_ref: null\n"));
        assert!(y.contains("started_at: \"2026-01-01T00:00:00.500000Z\"\n"));
        assert!(y.contains("writer_type: rust\n"));
    }
}
