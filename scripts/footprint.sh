#!/usr/bin/env bash
# Footprint report for auditors and operators: the stripped size of the static
# musl binary, the crates in the normal dependency tree, the lines of Rust in
# src/ outside tests, and the unsafe / unwrap / expect counts.
#
# Usage: scripts/footprint.sh [BINARY]
#   BINARY  an already built ovtp to measure; by default the script runs
#           cargo build --release --locked --target x86_64-unknown-linux-musl --bin ovtp
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=x86_64-unknown-linux-musl
BUDGET=$((1536 * 1024)) # 1.5 MiB
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "== static binary"
bin=${1:-}
if [ -z "$bin" ]; then
    cargo build --release --locked --target "$TARGET" --bin ovtp >&2
    bin="${CARGO_TARGET_DIR:-target}/$TARGET/release/ovtp"
fi
cp "$bin" "$tmp/ovtp"
# The release profile already strips; strip again in case BINARY was built otherwise.
if command -v strip >/dev/null; then strip "$tmp/ovtp"; fi
size=$(wc -c <"$tmp/ovtp" | tr -d ' ')
linkage=$(file -b "$tmp/ovtp" 2>/dev/null | grep -oE 'static(-pie)? linked|statically linked|dynamically linked' || echo "unknown (no file command)")
printf 'ovtp (%s, stripped): %d bytes = %d KiB = %.2f MiB; %s\n' "$TARGET" "$size" $((size / 1024)) \
    "$(echo "$size / 1048576" | bc -l)" "$linkage"
if [ "$size" -le "$BUDGET" ]; then
    echo "budget 1.5 MiB ($BUDGET bytes): within, $((BUDGET - size)) bytes to spare"
else
    echo "budget 1.5 MiB ($BUDGET bytes): OVER by $((size - BUDGET)) bytes"
fi

echo
echo "== crates in the normal dependency tree ($TARGET)"
cargo tree --locked -e normal --prefix none --target "$TARGET" | sed 's/ (\*)$//; s/ (proc-macro)$//' |
    sort -u >"$tmp/crates"
grep -v '^ovtp ' "$tmp/crates" | tr '\n' ' ' | fold -s -w 100 | sed 's/ *$//'
echo
echo "count: $(grep -vc '^ovtp ' "$tmp/crates") (besides ovtp itself)"
echo "direct: $(cargo tree --locked -e normal --depth 1 --prefix none --target "$TARGET" | tail -n +2 |
    cut -d' ' -f1 | sort | tr '\n' ' ' | sed 's/ *$//')"

echo
echo "== lines of Rust in src/ (outside #[cfg(test)] items; no blank or comment-only lines)"
files=$(find src -name '*.rs' | sort)
# shellcheck disable=SC2086 # file names from src/ have no spaces
LC_ALL=C awk -f scripts/rust-lines.awk $files >"$tmp/lines"
for f in $files; do
    printf '%6d  %s\n' "$(grep -c "^C:$f:" "$tmp/lines" || true)" "$f"
done
lib=$(grep '^C:src/' "$tmp/lines" | grep -vc '^C:src/bin/' || true)
cli=$(grep -c '^C:src/bin/' "$tmp/lines" || true)
text=$(grep -c '^S:' "$tmp/lines" || true)
echo "total: $((lib + cli)) lines of code (library $lib, command line $cli);" \
    "plus $text lines inside multi-line string literals (help texts)"

echo
echo "== unsafe (tokens in code, outside tests)"
unsafe=$(grep -E '^C:' "$tmp/lines" | cut -d: -f4- | grep -cE '(^|[^A-Za-z0-9_])unsafe([^A-Za-z0-9_]|$)' || true)
echo "count: $unsafe; #![forbid(unsafe_code)] in: $(grep -l '^#!\[forbid(unsafe_code)\]' $files | tr '\n' ' ' | sed 's/ *$//')"

echo
echo "== unwrap() / expect( outside tests, each with the nearest comment above it (same block)"
grep -E '^C:' "$tmp/lines" | grep -E '\.unwrap\(\)|\.expect\(' | cut -d: -f2,3 >"$tmp/unwraps" || true
uncommented=0
while IFS=: read -r file line; do
    # The comment on the line itself, else the closest comment line above it,
    # looking back at most 8 lines and not past a blank line.
    note=$(awk -v n="$line" 'NR > n - 9 && NR < n { if ($0 ~ /^[ \t]*$/) c = ""; else if ($0 ~ /\/\//) c = $0 }
        NR == n { if ($0 ~ /\/\//) c = $0; print c; exit }' "$file" | sed 's/^.*\/\/[\/!]* *//' | cut -c1-90)
    [ -n "$note" ] || uncommented=$((uncommented + 1))
    echo "  $file:$line: $(sed -n "${line}p" "$file" | sed 's/^ *//' | cut -c1-90)"
    echo "      ${note:+// }${note:-NO COMMENT}"
done <"$tmp/unwraps"
echo "count: $(wc -l <"$tmp/unwraps" | tr -d ' '); with no comment nearby: $uncommented (a comment nearby may be about something else: read them)"
