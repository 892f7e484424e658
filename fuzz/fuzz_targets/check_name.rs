//! Remote-name validation: every accepted name stays inside the files
//! directory when joined to it, and has no component that could escape it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ovtp::{PARTIAL_SUFFIX, check_name};
use std::path::{Component, Path};

fuzz_target!(|data: &[u8]| {
    let Ok(name) = std::str::from_utf8(data) else {
        return;
    };
    if check_name(name).is_err() {
        return;
    }
    assert!(!name.chars().any(|c| c.is_control() || c == '\\'));
    let path = Path::new(name);
    assert!(path.components().all(|c| matches!(c, Component::Normal(_))), "{name:?}");
    assert!(name.split('/').all(|p| !p.is_empty() && p != "." && p != ".."));
    let root = Path::new("/srv/ovtp/files");
    let joined = root.join(path);
    assert!(joined.starts_with(root) && joined != root, "{name:?}");
    let file = joined.file_name().unwrap().to_string_lossy();
    assert!(!file.ends_with(PARTIAL_SUFFIX), "{name:?}");
});
