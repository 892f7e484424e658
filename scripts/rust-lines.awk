# Reads Rust sources and prints, for every line that holds code and is not
# inside a #[cfg(test)] item, "FILE:LINE:CODE", where CODE is the line with
# comments removed and the contents of string and char literals blanked,
# prefixed "C:"; lines wholly inside a multi-line string literal (help texts)
# are printed as "S:FILE:LINE:" so they can be counted apart.
# A small scanner, not a parser: it knows line and nested block comments,
# strings (escapes, raw strings r#"..."#, byte strings) and char literals
# versus lifetimes, which is what counting braces and tokens needs.
# Usage: awk -f rust-lines.awk FILE...

function reset_file() { depth = 0; blk = 0; instr = 0; raw = -1; skip = 0; skip_depth = 0; pending = 0; wait_open = 0 }

FNR == 1 { reset_file() }

{
    line = $0; n = length(line); code = ""; i = 1
    was_str = (instr || raw >= 0) && line ~ /[^ \t]/
    if (!blk && !instr && raw < 0 && line ~ /^[ \t]*#\[cfg\(test\)\]/ && !skip) {
        # The next item (module, function, impl, use) is test-only.
        pending = 1; next
    }
    while (i <= n) {
        c = substr(line, i, 1); c2 = substr(line, i, 2)
        if (blk) {                                   # inside /* ... */ (nestable)
            if (c2 == "/*") { blk++; i += 2; continue }
            if (c2 == "*/") { blk--; i += 2; continue }
            i++; continue
        }
        if (instr) {                                 # inside "..."
            if (c == "\\") { i += 2; continue }
            if (c == "\"") { instr = 0; code = code c }
            i++; continue
        }
        if (raw >= 0) {                              # inside r#"..."#
            close_seq = "\"" hashes(raw)
            if (substr(line, i, length(close_seq)) == close_seq) {
                code = code close_seq; i += length(close_seq); raw = -1; continue
            }
            i++; continue
        }
        if (c2 == "//") break
        if (c2 == "/*") { blk = 1; i += 2; continue }
        if (c == "\"") { instr = 1; code = code c; i++; continue }
        if ((c == "r" || c2 == "br") && (i == 1 || substr(line, i - 1, 1) !~ /[A-Za-z0-9_]/)) {
            j = i + (c == "r" ? 1 : 2); h = 0
            while (substr(line, j, 1) == "#") { h++; j++ }
            if (substr(line, j, 1) == "\"") {
                raw = h; code = code substr(line, i, j - i + 1); i = j + 1; continue
            }
        }
        if (c == "'") {                              # char literal or lifetime
            if (substr(line, i + 1, 1) == "\\") {
                j = index(substr(line, i + 2), "'")
                if (j > 0) { code = code "' '"; i = i + 2 + j; continue }
            } else if (substr(line, i + 2, 1) == "'") {
                code = code "' '"; i += 3; continue
            }
        }
        if (c == "{") depth++
        if (c == "}") depth--
        code = code c; i++
    }
    if (pending) {
        # The attributed item starts here; it ends where its braces close,
        # or at a `;` if it has no body, or at a `,` (a field or an arm).
        pending = 0
        if (code ~ /\{/ && depth > 0) { skip = 1; skip_depth = depth - 1 }
        else if (code !~ /[;,][ \t]*$/) { skip = 1; skip_depth = depth; wait_open = 1 }
        next
    }
    if (skip) {
        if (wait_open && depth > skip_depth) wait_open = 0
        if (!wait_open && depth <= skip_depth) skip = 0
        next
    }
    if (code ~ /[^ \t]/) print "C:" FILENAME ":" FNR ":" code
    else if (was_str) print "S:" FILENAME ":" FNR ":"
}

function hashes(k,   s) { s = ""; while (k-- > 0) s = s "#"; return s }
