//! [`InMemoryManifestStore`]: a process-local store for tests and embedded use. Manifests go
//! through the real SQLite encoding, so tests see production behaviour.

use std::sync::Mutex;

use async_trait::async_trait;
use shardyfusion_core::{
    Error, ErrorKind, ManifestRef, ManifestStore, ParsedManifest, PublishObserver,
    RequiredBuildMeta, RequiredShardMeta, Result, Timestamp, confine_to_recorded_prefix,
};
use shardyfusion_manifest::{build_manifest, parse_manifest};

#[derive(Debug, Default)]
struct State {
    /// Publish history, oldest first: the ref and the manifest image.
    manifests: Vec<(ManifestRef, Vec<u8>)>,
    current: Option<ManifestRef>,
}

/// An in-memory `ManifestStore`. Refs are `mem://manifests/run_id=<id>/manifest`.
#[derive(Debug, Default)]
pub struct InMemoryManifestStore {
    state: Mutex<State>,
}

impl InMemoryManifestStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replace the stored image of `manifest_ref` (test utility, e.g. to corrupt it).
    pub fn replace_manifest_bytes(&self, manifest_ref: &str, bytes: Vec<u8>) -> bool {
        let mut s = self.lock();
        match s
            .manifests
            .iter_mut()
            .find(|(r, _)| r.manifest_ref == manifest_ref)
        {
            Some(entry) => {
                entry.1 = bytes;
                true
            }
            None => false,
        }
    }

    fn image(&self, manifest_ref: &str) -> Result<Vec<u8>> {
        self.lock()
            .manifests
            .iter()
            .find(|(r, _)| r.manifest_ref == manifest_ref)
            .map(|(_, b)| b.clone())
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::ManifestParse,
                    format!("Manifest not found: ref={manifest_ref}"),
                )
            })
    }
}

#[async_trait]
impl ManifestStore for InMemoryManifestStore {
    async fn publish(
        &self,
        build: &RequiredBuildMeta,
        shards: &[RequiredShardMeta],
        observer: &dyn PublishObserver,
    ) -> Result<ManifestRef> {
        let image = build_manifest(build, shards)?;
        let r = ManifestRef {
            manifest_ref: format!("mem://manifests/run_id={}/manifest", build.run_id),
            run_id: build.run_id.clone(),
            published_at: Timestamp::now(),
        };
        {
            let mut s = self.lock();
            if s.manifests.iter().any(|(m, _)| m.run_id == r.run_id) {
                return Err(Error::run_id_published(&r.run_id, "this in-memory store"));
            }
            s.manifests.push((r.clone(), image));
            s.current = Some(r.clone());
        }
        observer.manifest_published(&r.manifest_ref);
        observer.current_published(&r.manifest_ref);
        Ok(r)
    }

    async fn load_current(&self) -> Result<Option<ManifestRef>> {
        Ok(self.lock().current.clone())
    }

    async fn load_manifest(&self, manifest_ref: &str) -> Result<ParsedManifest> {
        let mut m = parse_manifest(&self.image(manifest_ref)?)?;
        confine_to_recorded_prefix(&mut m, &[] as &[&str])?;
        Ok(m)
    }

    async fn list_manifests(&self, limit: usize) -> Result<Vec<ManifestRef>> {
        Ok(self
            .lock()
            .manifests
            .iter()
            .rev()
            .take(limit)
            .map(|(r, _)| r.clone())
            .collect())
    }

    async fn set_current(&self, manifest_ref: &str) -> Result<()> {
        parse_manifest(&self.image(manifest_ref)?)?;
        let mut s = self.lock();
        let r = s
            .manifests
            .iter()
            .find(|(r, _)| r.manifest_ref == manifest_ref)
            .map(|(r, _)| r.clone());
        s.current = r;
        Ok(())
    }
}
