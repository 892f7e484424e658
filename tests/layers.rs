//! The layering rule of `src/lib.rs`: the protocol core (`src/proto/`) has
//! no sockets, files or threads. It is read as text, so the rule holds for
//! every build, whatever features are on.

use std::path::Path;

/// Names that mean the core does I/O or spawns threads.
const FORBIDDEN: [&str; 9] = [
    "std::net",
    "std::fs",
    "std::thread",
    "TcpStream",
    "TcpListener",
    "UdpSocket",
    "File",
    "spawn",
    "std::process",
];

fn ident(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || c == '_')
}

/// Whether `word` occurs in `line` as a whole name (`File`, not `FileData`).
fn names(line: &str, word: &str) -> bool {
    line.match_indices(word).any(|(i, _)| {
        !ident(line[..i].chars().next_back()) && !ident(line[i + word.len()..].chars().next())
    })
}

/// Each forbidden name found in `text`, with its line number (comments included:
/// a core that talks about spawning in a comment is worth a look too).
fn offences(text: &str) -> Vec<(usize, &'static str)> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        for word in FORBIDDEN {
            if names(line, word) {
                found.push((n + 1, word));
            }
        }
    }
    found
}

#[test]
fn the_protocol_core_has_no_sockets_files_or_threads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/proto");
    let mut files = 0;
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("src/proto exists") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            files += 1;
            let text = std::fs::read_to_string(&path).unwrap();
            for (line, word) in offences(&text) {
                found.push(format!("{}:{line}: {word}", path.display()));
            }
        }
    }
    assert!(files >= 6, "expected the core's files, found {files}");
    assert!(found.is_empty(), "I/O in the protocol core:\n{}", found.join("\n"));
}

#[test]
fn the_check_finds_each_forbidden_name() {
    // The check itself must be able to fail: every name, planted, is found.
    for word in FORBIDDEN {
        let planted = format!("fn f() {{ let _ = {word}; }}");
        assert_eq!(offences(&planted), vec![(1, word)], "{word} not found");
    }
    assert!(offences("use super::codec::Reader; struct FileData; fn respawn_at() {}").is_empty());
}
