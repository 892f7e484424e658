//! A fresh directory, removed on drop: the one copy for the tests (through
//! `tests/common`) and the benchmarks (`benches/ovtp`, which includes this file
//! by path).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Create `path` and its missing parents with mode 0755, whatever the umask
/// (a umask only removes bits): a server refuses a files directory that group
/// or others can write, so the tests must not depend on the umask they run under.
#[allow(dead_code)]
pub fn make_dir(path: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o755);
    builder.create(path)
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// `ovtp-test-{tag}-{pid}-{n}` under the system temp dir; panics if it
    /// cannot be made.
    pub fn new(tag: &str) -> TempDir {
        Self::try_new_in(&std::env::temp_dir(), &format!("test-{tag}"))
            .expect("creating a temp dir")
    }

    /// `ovtp-{tag}-{pid}-{n}` under `base`, emptied first if it exists.
    pub fn try_new_in(base: &Path, tag: &str) -> std::io::Result<TempDir> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = base.join(format!(
            "ovtp-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        make_dir(&p)?;
        Ok(TempDir(p))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
