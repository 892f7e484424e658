//! Name locks: one writer per target name in this process.

use crate::keys::Fingerprint;
use crate::proto::msg::RequestId;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// Lock `m`, recovering from poisoning: each mutex locked this way is
/// changed in single steps (an insert, a remove, a value replaced whole), so
/// a panic while it was held cannot have left its data half-updated, and the
/// server keeps going instead of failing every later caller.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Who holds a name: the request (client key and request id) and its connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Owner {
    pub(crate) request: (Fingerprint, RequestId),
    pub(crate) conn: u64,
}

/// Target paths with a transfer in progress in this process: one writer per name.
#[derive(Default)]
pub(crate) struct NameLocks(Mutex<HashMap<PathBuf, Owner>>);

/// Holds a name until dropped.
pub(crate) struct NameGuard<'a> {
    locks: &'a NameLocks,
    path: PathBuf,
}

impl NameLocks {
    /// Take the name, or learn who holds it.
    pub(crate) fn try_lock(&self, path: &Path, owner: &Owner) -> Result<NameGuard<'_>, Owner> {
        let mut map = lock(&self.0);
        if let Some(holder) = map.get(path) {
            return Err(holder.clone());
        }
        map.insert(path.to_path_buf(), owner.clone());
        Ok(NameGuard { locks: self, path: path.to_path_buf() })
    }
}

impl Drop for NameGuard<'_> {
    fn drop(&mut self) {
        lock(&self.locks.0).remove(&self.path);
    }
}
