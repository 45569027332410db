//! Deleting objects: one bulk path (the store's `delete_stream`, batched where the store can)
//! for every caller, an object already gone counting as deleted.

use futures::stream::{BoxStream, StreamExt as _};
use object_store::ObjectStore;
use object_store::path::Path;

/// Delete `paths` (a stream, so a listing is never held whole); stops at the first error
/// other than not-found. Returns how many objects were deleted or already gone.
pub async fn delete_objects(
    store: &dyn ObjectStore,
    paths: BoxStream<'static, object_store::Result<Path>>,
) -> object_store::Result<u64> {
    let mut deleted = store.delete_stream(paths);
    let mut n = 0u64;
    while let Some(r) = deleted.next().await {
        match r {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => n += 1,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Delete every object under `prefix` (see [`delete_objects`]).
pub async fn delete_prefix(store: &dyn ObjectStore, prefix: &Path) -> object_store::Result<u64> {
    let listing = store.list(Some(prefix)).map(|m| m.map(|m| m.location));
    delete_objects(store, listing.boxed()).await
}
