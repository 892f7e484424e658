#!/usr/bin/env bash
# ovtp beside OpenSSH on this machine, in one run.
#
# Starts a throwaway sshd on 127.0.0.1 (random free high port, its own config,
# host keys and authorized_keys in a temp dir), times scp of one random file up
# and down (default cipher and aes128-gcm@openssh.com), `ssh host true`
# connection setup and round trips through an open ssh channel (`ssh host cat`),
# then `ovtp put` from the command line into a folder on disk beside scp and
# an ssh pipe (`ssh -c aes128-gcm@openssh.com HOST 'cat > FILE'`), alternating,
# then runs the ovtp bench binary for the matching figures (the file rows move
# the very same file) and prints a table with ratios and the targets of issue 11.
# With OVTP_BEFORE, a second tree (the code before a change) is measured in the
# same run: its bench just before this tree's, its `ovtp put` in each round
# beside the others, and a table of its own.
# The file and both sides' copies live on /dev/shm (tmpfs) when it exists, so
# that disk speed does not dominate either tool. The sshd is killed by its pid
# on exit and the temp dirs removed.
#
# Usage: bench/compare-scp.sh
# Environment:
#   OVTP_BENCH_QUICK=1      smoke run: 256 MiB file, 1 run each, 5 ssh connections
#   OVTP_SCP_SIZE_MIB=N     file size in MiB (default 1024)
#   OVTP_SCP_RUNS=N         scp runs per direction and cipher; the median is kept (default 3)
#   OVTP_SSH_N=N            `ssh host true` repetitions (default 20)
#   SSHD=/path/to/sshd      sshd binary (default /usr/sbin/sshd; installed with
#                           apt-get when missing and running as root)
#   OVTP_BEFORE=DIR         also measure the ovtp tree in DIR (e.g. made with
#                           `git archive main | tar -x -C DIR`), for before/after
#   OVTP_CLI_DIR=DIR        the folder on disk for the command-line row (default:
#                           a new folder in the temp dir, ${TMPDIR:-/tmp})
set -euo pipefail

quick=${OVTP_BENCH_QUICK:-}
[ "$quick" = 0 ] && quick=
SIZE_MIB=${OVTP_SCP_SIZE_MIB:-$([ -n "$quick" ] && echo 256 || echo 1024)}
RUNS=${OVTP_SCP_RUNS:-$([ -n "$quick" ] && echo 1 || echo 3)}
N_SSH=${OVTP_SSH_N:-$([ -n "$quick" ] && echo 5 || echo 20)}
SSHD=${SSHD:-/usr/sbin/sshd}
before=${OVTP_BEFORE:-}
if [ -n "$before" ]; then
    before=$(cd "$before" && pwd)
    [ -f "$before/Cargo.toml" ] || { echo "OVTP_BEFORE=$before has no Cargo.toml" >&2; exit 1; }
fi
SIZE=$((SIZE_MIB * 1024 * 1024))
# Each scp must finish at >= 10 MB/s, plus start-up.
SCP_TIMEOUT=$((SIZE / 10000000 + 30))

repo=$(cd "$(dirname "$0")/.." && pwd)
load_start=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo "?")
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ovtp-scp.XXXXXX")
# The big file and its copies: on tmpfs (RAM) when there is one.
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
    files=$(mktemp -d /dev/shm/ovtp-scp.XXXXXX)
    files_place="/dev/shm (tmpfs)"
else
    files=$tmp
    files_place="$tmp (no /dev/shm: disk speed may dominate)"
fi
sshd_pid=
ovtp_pids=()
made_run_sshd=
made_policy=

cleanup() {
    local rc=$?
    if [ -n "$sshd_pid" ] && kill -0 "$sshd_pid" 2>/dev/null; then
        kill "$sshd_pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$sshd_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$sshd_pid" 2>/dev/null || true
        wait "$sshd_pid" 2>/dev/null || true
    fi
    for p in "${ovtp_pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    [ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d
    [ -n "$made_run_sshd" ] && rmdir /run/sshd 2>/dev/null
    rm -rf "$tmp" "$files"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '%s\n' "$*" >&2; }

# --- seconds between two $EPOCHREALTIME stamps, statistics ---------------------
# CPU seconds the whole machine has been busy (all cores and processes; user,
# nice, system, irq, softirq, steal), from /proc/stat in USER_HZ (100) ticks.
machine_busy() { awk '$1 == "cpu" { printf "%.2f", ($2 + $3 + $4 + $7 + $8 + $9) / 100; exit }' /proc/stat; }
# CPU seconds of the reaped children of the (sub)shell $1 (scp, which reaps
# its ssh), from /proc/PID/stat cutime cstime.
children_cpu() { awk '{ printf "%.2f", ($16 + $17) / 100 }' "/proc/$1/stat"; }
# CPU seconds (utime + stime) of the descendants of the sshd listener (the
# connection's sshd processes and the SFTP server), sampled every 10 ms until
# the file $1 exists (the listener does not collect their times in cutime, as
# checked with `perf record -a`). A process that exits loses at most its last
# 10 ms. Bash built-ins only, so the sampling costs little CPU.
sshd_tree_cpu() {
    local stop=$1 p st f sum=0 tick
    local -A seen=()
    local -a queue kids
    exec {tick}<> <(:)
    while :; do
        queue=()
        read -r -a queue 2>/dev/null <"/proc/$sshd_pid/task/$sshd_pid/children" || true
        while [ ${#queue[@]} -gt 0 ]; do
            p=${queue[0]}; queue=("${queue[@]:1}")
            if read -r st 2>/dev/null <"/proc/$p/stat"; then
                read -r -a f <<<"${st##*) }"
                seen[$p]=$((f[11] + f[12]))  # utime, stime (fields 14, 15)
                kids=()
                read -r -a kids 2>/dev/null <"/proc/$p/task/$p/children" || true
                queue+=("${kids[@]}")
            fi
        done
        [ -e "$stop" ] && break
        read -r -t 0.01 -u "$tick" || true
    done
    exec {tick}<&-
    for p in "${!seen[@]}"; do sum=$((sum + seen[$p])); done
    awk -v t="$sum" 'BEGIN { printf "%.2f", t / 100 }'
}
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6f", b - a }'; }
# quantile Q (0..1) of the numbers on stdin, the same rule as the Rust bench
quantile() { sort -g | awk -v q="$1" '{ v[NR - 1] = $1 } END { if (NR) { i = int((NR - 1) * q + 0.5); print v[i] } }'; }
fmt() { awk -v x="$1" -v d="${2:-1}" 'BEGIN { if (x == "") print "n/a"; else printf "%.*f", d, x }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "n/a"; else printf "%.2fx", a / b }'; }

# --- find or install sshd --------------------------------------------------------
skip=
if [ ! -x "$SSHD" ]; then
    if [ "$SSHD" != /usr/sbin/sshd ]; then
        skip="SSHD=$SSHD is not an executable"
    elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        say "sshd not found at $SSHD: installing openssh-server with apt-get"
        # Keep the package's own sshd service from starting (Debian convention).
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
            chmod 755 /usr/sbin/policy-rc.d
            made_policy=1
        fi
        export DEBIAN_FRONTEND=noninteractive
        if ! timeout 300 apt-get install -y --no-install-recommends openssh-server >"$tmp/apt.log" 2>&1; then
            timeout 300 apt-get update >>"$tmp/apt.log" 2>&1 || true
            timeout 600 apt-get install -y --no-install-recommends openssh-server >>"$tmp/apt.log" 2>&1 || true
        fi
        if [ -n "$made_policy" ]; then rm -f /usr/sbin/policy-rc.d; made_policy=; fi
        [ -x "$SSHD" ] || { tail -5 "$tmp/apt.log" >&2; skip="apt-get install openssh-server failed"; }
    else
        skip="$SSHD is missing and this user cannot install openssh-server (not root or no apt-get)"
    fi
fi
for tool in ssh scp ssh-keygen timeout awk; do
    command -v "$tool" >/dev/null || skip="${skip:-$tool is missing}"
done
avail_kib=$(df -Pk "$files" | awk 'NR == 2 { print $4 }')
if [ "$avail_kib" -lt $((SIZE / 1024 * 3 + 102400)) ]; then
    say "not enough free space in $files for 3 copies of $SIZE_MIB MiB"
    exit 1
fi

user=$(id -un)
common=(-F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=no -o GlobalKnownHostsFile=/dev/null
    -o ConnectTimeout=10 -o IdentitiesOnly=yes -o ControlMaster=no -o ControlPath=none
    -o ServerAliveInterval=10 -o ServerAliveCountMax=3)
# One known_hosts file per host key type, so neither looks like a changed key.
ed_key=(-i "$tmp/id_ed25519" -o HostKeyAlgorithms=ssh-ed25519 -o UserKnownHostsFile="$tmp/known_hosts_ed25519")
rsa_key=(-i "$tmp/id_rsa" -o HostKeyAlgorithms=rsa-sha2-256 -o PubkeyAcceptedAlgorithms=rsa-sha2-256
    -o UserKnownHostsFile="$tmp/known_hosts_rsa")

start_sshd() {
    mkdir -p "$tmp/ssh"
    ssh-keygen -q -t ed25519 -N '' -f "$tmp/ssh/host_ed25519" </dev/null
    ssh-keygen -q -t rsa -b 3072 -N '' -f "$tmp/ssh/host_rsa" </dev/null
    ssh-keygen -q -t ed25519 -N '' -f "$tmp/id_ed25519" </dev/null
    ssh-keygen -q -t rsa -b 3072 -N '' -f "$tmp/id_rsa" </dev/null
    cat "$tmp/id_ed25519.pub" "$tmp/id_rsa.pub" >"$tmp/ssh/authorized_keys"
    chmod 600 "$tmp/ssh/authorized_keys"
    # Privilege separation directory, needed when sshd runs as root.
    if [ "$(id -u)" = 0 ] && [ ! -d /run/sshd ]; then
        mkdir -p /run/sshd && chmod 755 /run/sshd && made_run_sshd=1
    fi
    local attempt port
    for attempt in 1 2 3 4 5; do
        port=
        for _ in $(seq 50); do
            local p=$((20000 + RANDOM % 40000))
            # Free if nothing answers a connection on it.
            if ! timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$p" 2>/dev/null; then
                port=$p
                break
            fi
        done
        [ -n "$port" ] || { say "no free port found"; return 1; }
        cat >"$tmp/ssh/sshd_config" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey $tmp/ssh/host_ed25519
HostKey $tmp/ssh/host_rsa
PidFile $tmp/ssh/sshd.pid
AuthorizedKeysFile $tmp/ssh/authorized_keys
AllowUsers $user
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
AllowTcpForwarding no
AllowAgentForwarding no
PermitTunnel no
MaxStartups 100:30:200
Subsystem sftp internal-sftp
LogLevel INFO
EOF
        timeout 10 "$SSHD" -t -f "$tmp/ssh/sshd_config" || { say "sshd rejects its config"; return 1; }
        "$SSHD" -D -e -f "$tmp/ssh/sshd_config" 2>"$tmp/ssh/sshd.log" &
        sshd_pid=$!
        for _ in $(seq 100); do
            grep -q "Server listening" "$tmp/ssh/sshd.log" 2>/dev/null && break
            kill -0 "$sshd_pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$sshd_pid" 2>/dev/null && grep -q "Server listening" "$tmp/ssh/sshd.log"; then
            PORT=$port
            common+=(-o Port="$PORT")
            if timeout 30 ssh "${common[@]}" -o LogLevel=ERROR "${ed_key[@]}" "$user@127.0.0.1" true </dev/null; then
                return 0
            fi
            say "sshd is up but ssh fails:"; tail -5 "$tmp/ssh/sshd.log" >&2
            return 1
        fi
        say "sshd did not start on port $port (attempt $attempt):"; tail -3 "$tmp/ssh/sshd.log" >&2
        wait "$sshd_pid" 2>/dev/null || true
        sshd_pid=
    done
    return 1
}

if [ -z "$skip" ] && ! start_sshd; then
    skip="the throwaway sshd could not be started"
fi

declare -A R=()   # results: key -> number
if [ -n "$skip" ]; then
    say "SKIPPING the OpenSSH side: $skip"
else
    say "sshd pid $sshd_pid on 127.0.0.1:$PORT ($("$SSHD" -V 2>&1 | head -1 || true))"
    q=(-o LogLevel=ERROR)
    R[default_cipher]=$(timeout 30 ssh "${common[@]}" -v "${ed_key[@]}" "$user@127.0.0.1" true 2>&1 </dev/null |
        sed -n 's/.*kex: client->server cipher: \([^ ]*\).*/\1/p' | head -1)

    say "making a $SIZE_MIB MiB random file on $files_place"
    head -c "$SIZE" /dev/urandom >"$files/big.bin"

    # scp DIRECTION CIPHER_LABEL [cipher options]: prints the median seconds of
    # $RUNS runs, and the median CPU seconds the whole machine was busy per run.
    scp_runs() {
        local dir=$1 label=$2; shift 2
        local times=() busy=() cpu=() i t0 t1 b0 b1 c0 c1 sc src dst me=$BASHPID
        for i in $(seq "$RUNS"); do
            rm -f "$files/up.bin" "$files/down.bin"
            if [ "$dir" = up ]; then src=$files/big.bin dst="$user@127.0.0.1:$files/up.bin" out=$files/up.bin
            else src="$user@127.0.0.1:$files/big.bin" dst=$files/down.bin out=$files/down.bin; fi
            # Write back earlier runs' dirty pages first, so that no run pays for another's.
            timeout 120 sync || true
            rm -f "$tmp/stop"
            sshd_tree_cpu "$tmp/stop" >"$tmp/sshd_cpu" &
            local sampler=$!
            c0=$(children_cpu "$me"); b0=$(machine_busy); t0=$EPOCHREALTIME
            timeout "$SCP_TIMEOUT" scp -q "${common[@]}" "${q[@]}" "${ed_key[@]}" "$@" "$src" "$dst" </dev/null ||
                { say "scp $dir $label failed"; return 1; }
            t1=$EPOCHREALTIME; b1=$(machine_busy); c1=$(children_cpu "$me")
            # Let the connection's sshd processes finish, then stop the sampler.
            for _ in $(seq 50); do pgrep -P "$sshd_pid" >/dev/null || break; sleep 0.05; done
            touch "$tmp/stop"; wait "$sampler" || true
            sc=$(cat "$tmp/sshd_cpu")
            [ "$(stat -c %s "$out")" = "$SIZE" ] || { say "scp $dir $label: wrong size"; return 1; }
            if [ "$i" = 1 ] && [ "$dir" = up ] && [ "$label" = default ]; then
                cmp -s "$files/big.bin" "$out" || { say "scp copy differs"; return 1; }
            fi
            times+=("$(elapsed "$t0" "$t1")")
            busy+=("$(elapsed "$b0" "$b1")")
            cpu+=("$(awk -v a="$c0" -v b="$c1" -v c="$sc" 'BEGIN { print b - a + c }')")
            say "  scp $dir ($label) run $i: ${times[-1]} s; CPU of scp+ssh+sshd ${cpu[-1]} s, whole machine ${busy[-1]} s"
        done
        echo "$(printf '%s\n' "${times[@]}" | quantile 0.5) $(printf '%s\n' "${cpu[@]}" | quantile 0.5) $(printf '%s\n' "${busy[@]}" | quantile 0.5)"
    }
    for dir in up down; do
        for cipher in default gcm; do
            opt=(); [ $cipher = gcm ] && opt=(-c aes128-gcm@openssh.com)
            if m=$(scp_runs "$dir" $cipher "${opt[@]}"); then
                read -r s c b <<<"$m"
                R[scp_${dir}_${cipher}]=$(awk -v s="$s" -v n="$SIZE" 'BEGIN { print n / s / 1e6 }')
                R[scp_${dir}_${cipher}_ns]=$(awk -v c="$c" -v n="$SIZE" 'BEGIN { print c * 1e9 / n }')
                R[scp_${dir}_${cipher}_others]=$(awk -v c="$c" -v b="$b" -v s="$s" 'BEGIN { x = (b - c) / s; print (x > 0 ? x : 0) }')
            fi
        done
    done
    rm -f "$files/up.bin" "$files/down.bin"

    # --- the command line: the file from tmpfs into a folder on disk ---------------
    # `ovtp put` (each tree's own release build, RSA-3072 keys, a server with
    # --dir on disk), scp with its default cipher and `ssh -c aes128-gcm
    # HOST 'cat > FILE'`, alternating, $RUNS rounds; each timed from start to
    # exit (ovtp's includes its fsync before the rename; scp and cat do not sync).
    cli_dir=${OVTP_CLI_DIR:-$tmp/disk}
    mkdir -p "$cli_dir"
    cli_dir=$(mktemp -d "$cli_dir/ovtp-cli.XXXXXX")
    R[cli_fs]=$(stat -f -c %T "$cli_dir" 2>/dev/null || echo "?")
    trees=("$repo"); [ -n "$before" ] && trees=("$before" "$repo")
    oh=$tmp/ovtp-home
    cli_ok=1
    for k in "${!trees[@]}"; do
        say "building the ovtp command line in ${trees[$k]} (cargo build --release)"
        tdir=${CARGO_TARGET_DIR:-${trees[$k]}/target}
        if ! (cd "${trees[$k]}" && timeout 1800 cargo build --release --locked --bin ovtp >"$tmp/build.log" 2>&1); then
            tail -3 "$tmp/build.log" >&2; cli_ok=; break
        fi
        cp "$tdir/release/ovtp" "$tmp/ovtp-$k"
    done
    if [ -n "$cli_ok" ]; then
        "$tmp/ovtp-0" --home "$oh/s" keygen >/dev/null && "$tmp/ovtp-0" --home "$oh/c" keygen >/dev/null &&
            "$tmp/ovtp-0" --home "$oh/s" authorize "$oh/c/id_rsa.pub" >/dev/null || cli_ok=
        fp=$("$tmp/ovtp-0" --home "$oh/s" fingerprint "$oh/s/id_rsa.pub" 2>/dev/null) || cli_ok=
    fi
    for k in "${!trees[@]}"; do
        [ -n "$cli_ok" ] || break
        mkdir -p "$cli_dir/ovtp-$k"
        "$tmp/ovtp-$k" --home "$oh/s" serve --listen 127.0.0.1:0 --dir "$cli_dir/ovtp-$k" >"$tmp/serve-$k.log" 2>&1 &
        ovtp_pids+=($!)
        for _ in $(seq 100); do grep -q "listening on" "$tmp/serve-$k.log" && break; sleep 0.1; done
        R[cli_port_$k]=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/serve-$k.log" | head -1)
        [ -n "${R[cli_port_$k]}" ] || { say "ovtp serve did not start:"; tail -3 "$tmp/serve-$k.log" >&2; cli_ok=; }
    done
    # cli_run STDIN OUTPUT_FILE COMMAND...: seconds from start to exit; the output is checked and removed.
    cli_run() {
        local in=$1 out=$2 t0 t1; shift 2
        timeout 120 sync || true
        t0=$EPOCHREALTIME
        timeout "$SCP_TIMEOUT" "$@" <"$in" >/dev/null 2>"$tmp/cli.err" || { say "$1 failed: $(tail -2 "$tmp/cli.err")"; return 1; }
        t1=$EPOCHREALTIME
        [ "$(stat -c %s "$out" 2>/dev/null)" = "$SIZE" ] || { say "$1: $out has the wrong size"; return 1; }
        rm -f "$out"
        elapsed "$t0" "$t1"
    }
    declare -A CLI=()
    for i in $(seq "$RUNS"); do
        [ -n "$cli_ok" ] || break
        for k in "${!trees[@]}"; do
            t=$(cli_run /dev/null "$cli_dir/ovtp-$k/up.bin" "$tmp/ovtp-$k" --home "$oh/c" put "127.0.0.1:${R[cli_port_$k]}" \
                "$files/big.bin" --to up.bin --fingerprint "$fp") || { cli_ok=; break; }
            CLI[ovtp_$k]+="$t "
            say "  command line round $i: ovtp put (${trees[$k]}) $t s"
        done
        [ -n "$cli_ok" ] || break
        t=$(cli_run /dev/null "$cli_dir/scp.bin" scp -q "${common[@]}" "${q[@]}" "${ed_key[@]}" "$files/big.bin" \
            "$user@127.0.0.1:$cli_dir/scp.bin") || { cli_ok=; break; }
        CLI[scp]+="$t "
        t2=$(cli_run "$files/big.bin" "$cli_dir/ssh.bin" ssh "${common[@]}" "${q[@]}" "${ed_key[@]}" -c aes128-gcm@openssh.com \
            "$user@127.0.0.1" "cat > '$cli_dir/ssh.bin'") || { cli_ok=; break; }
        CLI[ssh]+="$t2 "
        say "  command line round $i: scp $t s, ssh aes128-gcm cat $t2 s"
    done
    for p in "${ovtp_pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    ovtp_pids=()
    rm -rf "$cli_dir"
    if [ -n "$cli_ok" ]; then
        for key in "${!CLI[@]}"; do
            s=$(printf '%s\n' ${CLI[$key]} | quantile 0.5)
            R[cli_$key]=$(awk -v s="$s" -v n="$SIZE" 'BEGIN { print n / s / 1e6 }')
        done
    fi

    # `ssh host true`, N times each with ed25519 and RSA-3072 keys (client and host).
    ssh_true() {
        local label=$1; shift
        local times=() i t0 t1
        for i in $(seq "$N_SSH"); do
            t0=$EPOCHREALTIME
            timeout 30 ssh "${common[@]}" "${q[@]}" "$@" "$user@127.0.0.1" true </dev/null ||
                { say "ssh true ($label) failed"; return 1; }
            t1=$EPOCHREALTIME
            times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { print (b - a) * 1000 }')")
        done
        printf '%s %s\n' "$(printf '%s\n' "${times[@]}" | quantile 0.5)" "$(printf '%s\n' "${times[@]}" | quantile 0.9)"
    }
    say "timing ssh host true, $N_SSH times each"
    if m=$(ssh_true ed25519 "${ed_key[@]}"); then read -r R[ssh_ed_med] R[ssh_ed_p90] <<<"$m"; fi
    if m=$(ssh_true rsa3072 "${rsa_key[@]}"); then read -r R[ssh_rsa_med] R[ssh_rsa_p90] <<<"$m"; fi

    # Round trips through an open ssh channel, measured by the ovtp bench binary.
    echo_cmd="timeout 120 ssh"
    for a in "${common[@]}" "${q[@]}" "${ed_key[@]}" "$user@127.0.0.1" cat; do
        echo_cmd+=" '${a//\'/\'\\\'\'}'"  # single-quoted for sh -c
    done
fi

# --- ovtp's matching figures, from the bench binary ---------------------------------
# The file rows move the same file as scp (made here when the OpenSSH side was skipped).
[ -f "$files/big.bin" ] || head -c "$SIZE" /dev/urandom >"$files/big.bin"
# ovtp_bench TREE TSV OUT: the bench of one tree.
ovtp_bench() {
    say "running the ovtp bench in $1 (ceiling, messages, connect, files)"
    (
        cd "$1"
        export OVTP_BENCH_ONLY=ceiling,messages,connect,files OVTP_BENCH_TSV="$2" OVTP_BENCH_FILE="$files/big.bin"
        if [ -n "${echo_cmd:-}" ]; then
            export OVTP_BENCH_ECHO_CMD="$echo_cmd" OVTP_BENCH_ECHO_LABEL="ssh channel to cat"
        fi
        [ -n "$quick" ] && export OVTP_BENCH_QUICK=1
        timeout 1200 cargo bench --bench ovtp 2>&1 >"$3" | grep -v '^ *\(Compiling\|Finished\|Running\)' >&2 || true
    ) || true
}
tsv_before=
if [ -n "$before" ]; then
    tsv_before=$tmp/before.tsv
    ovtp_bench "$before" "$tsv_before" "$tmp/before.out"
    [ -s "$tsv_before" ] || { say "the bench of $before did not produce figures"; tsv_before=; }
fi
tsv_after=$tmp/ovtp.tsv
ovtp_bench "$repo" "$tsv_after" "$tmp/ovtp.out"
rm -f "$files/big.bin"
[ -s "$tsv_after" ] || { say "the ovtp bench did not produce figures"; cat "$tmp/ovtp.out" >&2 || true; exit 1; }
tsv=$tsv_after
v() { awk -F'\t' -v k="$1" '$1 == k { print $2 }' "$tsv"; }
# b KEY: the same figure from the tree before (empty without OVTP_BEFORE).
b() { [ -z "$tsv_before" ] || awk -F'\t' -v k="$1" '$1 == k { print $2 }' "$tsv_before"; }
if [ -n "$tsv_before" ]; then
    echo
    echo "Before ($before):"
    cat "$tmp/before.out"
    echo
    echo "After ($repo):"
fi
echo
cat "$tmp/ovtp.out"

# --- the comparison --------------------------------------------------------------
sshv=$(ssh -V 2>&1)
gib=$(awk -v m="$SIZE_MIB" 'BEGIN { printf (m % 1024 ? "%d MiB" : "%d GiB"), (m % 1024 ? m : m / 1024) }')
row() { echo "| $1 | $2 | $3 | $4 |"; }
na="n/a (no figure from the ovtp bench)"
echo
echo "ovtp vs OpenSSH, $(nproc) cores, $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1), Linux $(uname -r)"
echo "$sshv; scp over SFTP (OpenSSH >= 9 default); default cipher: ${R[default_cipher]:-n/a}"
echo "file: $SIZE_MIB MiB random, the same file for scp and ovtp, all copies on $files_place"
echo "1-minute load average: $load_start at start, $(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo "?") at end (other work on the machine skews the figures)"
[ -n "$skip" ] && echo "OpenSSH side skipped: $skip"

# comparison TSV CLI_KEY LABEL: the table of one tree.
comparison() {
    local tsv=$1 ck=$2 up down o oo c3m c3p c2m c2p d name size_b cipher label k e t
    echo
    echo "$3:"
    echo
    echo "| measurement | ovtp | OpenSSH | ovtp / OpenSSH |"
    echo "|---|---|---|---|"
    up=$(v file.upload.mbps); down=$(v file.download.mbps)
    for cipher in default gcm; do
        label=$([ $cipher = default ] && echo "${R[default_cipher]:-default cipher}" || echo "aes128-gcm@openssh.com")
        row "upload $gib, MB/s (scp, $label)" "$( [ -n "$up" ] && fmt "$up" 0 || echo "$na")" \
            "$(fmt "${R[scp_up_$cipher]:-}" 0)" "$(ratio "$up" "${R[scp_up_$cipher]:-}")"
        row "download $gib, MB/s (scp, $label)" "$( [ -n "$down" ] && fmt "$down" 0 || echo "$na")" \
            "$(fmt "${R[scp_down_$cipher]:-}" 0)" "$(ratio "$down" "${R[scp_down_$cipher]:-}")"
    done
    # CPU per byte moved, both ends (median run): ovtp client + server processes;
    # scp + ssh + the sshd session and SFTP server. Other processes' CPU meanwhile,
    # in cores, in brackets (other work on the machine skews the MB/s).
    for d in up down; do
        name=$([ $d = up ] && echo upload || echo download)
        size_b=$(v file.size_bytes)
        o=$(awk -v a="$(v file.${name}.client.cpu_s)" -v b="$(v file.${name}.server.cpu_s)" -v n="$size_b" \
            'BEGIN { if (a == "" || b == "" || n == "") print ""; else print (a + b) * 1e9 / n }')
        oo=$(awk -v o="$(v file.${name}.others.cpu_s)" -v n="$size_b" -v r="$(v file.${name}.mbps)" \
            'BEGIN { if (o == "" || r == "") print "?"; else printf "%.2f", o / (n / r / 1e6) }')
        R[${ck}_${d}_ns]=$o
        for cipher in default gcm; do
            label=$([ $cipher = default ] && echo "${R[default_cipher]:-default cipher}" || echo "aes128-gcm@openssh.com")
            row "$name, CPU ns per byte, both ends (scp, $label) [other processes, cores]" "$(fmt "$o" 2) [$oo]" \
                "$(fmt "${R[scp_${d}_${cipher}_ns]:-}" 2) [$(fmt "${R[scp_${d}_${cipher}_others]:-}" 2)]" "$(ratio "$o" "${R[scp_${d}_${cipher}_ns]:-}")"
        done
    done
    row "command line: $gib from tmpfs into a folder on disk (${R[cli_fs]:-?}), MB/s, median of $RUNS alternating rounds: ovtp put / scp (${R[default_cipher]:-default cipher})" \
        "$(fmt "${R[cli_$ck]:-}" 0)" "$(fmt "${R[cli_scp]:-}" 0)" "$(ratio "${R[cli_$ck]:-}" "${R[cli_scp]:-}")"
    row "command line: same, ovtp put / \`ssh -c aes128-gcm@openssh.com HOST 'cat > FILE'\`" \
        "$(fmt "${R[cli_$ck]:-}" 0)" "$(fmt "${R[cli_ssh]:-}" 0)" "$(ratio "${R[cli_$ck]:-}" "${R[cli_ssh]:-}")"
    c3m=$(v connect3072.median_ms); c3p=$(v connect3072.p90_ms)
    c2m=$(v connect2048.median_ms); c2p=$(v connect2048.p90_ms)
    row "new connection, median ms: ovtp RSA-3072 handshake + 1 message / \`ssh host true\` ed25519" \
        "$(fmt "$c3m")" "$(fmt "${R[ssh_ed_med]:-}")" "$(ratio "$c3m" "${R[ssh_ed_med]:-}")"
    row "new connection, p90 ms: same" "$(fmt "$c3p")" "$(fmt "${R[ssh_ed_p90]:-}")" "$(ratio "$c3p" "${R[ssh_ed_p90]:-}")"
    row "new connection, median ms: ovtp RSA-3072 / \`ssh host true\` RSA-3072 keys" \
        "$(fmt "$c3m")" "$(fmt "${R[ssh_rsa_med]:-}")" "$(ratio "$c3m" "${R[ssh_rsa_med]:-}")"
    row "new connection, median ms: ovtp RSA-2048 / \`ssh host true\` ed25519" \
        "$(fmt "$c2m")" "$(fmt "${R[ssh_ed_med]:-}")" "$(ratio "$c2m" "${R[ssh_ed_med]:-}")"
    for k in msg100 msg16k; do
        name=$([ $k = msg100 ] && echo "100 B" || echo "16 KiB")
        o=$(v $k.ovtp.median_us); e=$(v $k.echo.median_us); t=$(v $k.tcp.median_us)
        row "$name round trip on an open connection, median µs (ssh: channel to \`cat\`)" \
            "$(fmt "$o")" "$(fmt "$e")" "$(ratio "$o" "$e")"
        row "$name round trip, raw TCP ping-pong in the same run, median µs" "$(fmt "$t")" "" "ovtp/TCP $(ratio "$o" "$t")"
    done
}
if [ -n "$tsv_before" ]; then
    comparison "$tsv_before" ovtp_0 "Before ($before)"
    comparison "$tsv_after" ovtp_1 "After ($repo)"
else
    comparison "$tsv_after" ovtp_0 "ovtp ($repo)"
fi
ck=$([ -n "$tsv_before" ] && echo ovtp_1 || echo ovtp_0)
echo
echo "Ratios: for MB/s above 1 means ovtp is faster; for times below 1 means ovtp is faster."
echo
# --- the targets of issue 11, judged on this run ----------------------------------
# verdict VALUE OP LIMIT: "met" or "NOT met" ("n/a" without a value)
verdict() { awk -v x="$1" -v op="$2" -v l="$3" 'BEGIN { if (x == "" || l == "") { print "n/a"; exit }
    ok = (op == ">=") ? (x >= l) : (x <= l); print ok ? "met" : "NOT met" }'; }
trow() { echo "| $1 | $2 | $3 |"; }
div() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print ""; else print a / b }'; }
echo "Targets of issue 11 in this run$([ -n "$tsv_before" ] && echo " (after; before in brackets where it has the figure)"):"
echo
echo "| target | measured | verdict |"
echo "|---|---|---|"
up=$(v file.upload.mbps); down=$(v file.download.mbps)
for d in up down; do
    name=$([ $d = up ] && echo upload || echo download)
    o=$([ $d = up ] && echo "$up" || echo "$down")
    was=$(b file.${name}.mbps)
    r1=$(div "$o" "${R[scp_${d}_gcm]:-}"); r2=$(div "$o" "${R[scp_${d}_default]:-}")
    trow "$name >= 1.0x scp -c aes128-gcm" "$(fmt "$r1" 2)x ($(fmt "$o" 0) / $(fmt "${R[scp_${d}_gcm]:-}" 0) MB/s)$([ -n "$was" ] && echo " [before $(fmt "$(div "$was" "${R[scp_${d}_gcm]:-}")" 2)x, $(fmt "$was" 0) MB/s]")" "$(verdict "$r1" '>=' 1.0)"
    trow "$name >= 1.6x scp (default cipher)" "$(fmt "$r2" 2)x$([ -n "$was" ] && echo " [before $(fmt "$(div "$was" "${R[scp_${d}_default]:-}")" 2)x]")" "$(verdict "$r2" '>=' 1.6)"
    o=${R[${ck}_${d}_ns]:-}; was=${R[ovtp_0_${d}_ns]:-}; [ -n "$tsv_before" ] || was=
    trow "$name CPU per byte, both ends, <= scp -c aes128-gcm's" "$(fmt "$o" 2) / $(fmt "${R[scp_${d}_gcm_ns]:-}" 2) ns$([ -n "$was" ] && echo " [before $(fmt "$was" 2) ns]")" "$(verdict "$o" '<=' "${R[scp_${d}_gcm_ns]:-}")"
    sk=$(v file.${name}.server.kib); ckib=$(v file.${name}.client.kib)
    mx=$(awk -v a="$sk" -v b="$ckib" 'BEGIN { if (a == "" || b == "") print ""; else print (a > b ? a : b) / 1024 }')
    trow "$name peak memory <= 16 MiB per side" "server $(fmt "$(div "$sk" 1024)") MiB, client $(fmt "$(div "$ckib" 1024)") MiB" "$(verdict "$mx" '<=' 16)"
done
cli=${R[cli_$ck]:-}; was=; [ -n "$tsv_before" ] && was=${R[cli_ovtp_0]:-}
r1=$(div "$cli" "${R[cli_ssh]:-}"); r2=$(div "$cli" "${R[cli_scp]:-}")
trow "command line put >= 1.0x the ssh aes128-gcm pipe" "$(fmt "$r1" 2)x ($(fmt "$cli" 0) / $(fmt "${R[cli_ssh]:-}" 0) MB/s)$([ -n "$was" ] && echo " [before $(fmt "$(div "$was" "${R[cli_ssh]:-}")" 2)x, $(fmt "$was" 0) MB/s]")" "$(verdict "$r1" '>=' 1.0)"
trow "command line put >= 1.6x scp (default cipher)" "$(fmt "$r2" 2)x ($(fmt "${R[cli_scp]:-}" 0) MB/s)$([ -n "$was" ] && echo " [before $(fmt "$(div "$was" "${R[cli_scp]:-}")" 2)x]")" "$(verdict "$r2" '>=' 1.6)"
s1=$(v ceiling.seal_file1.cpu_mbps); s2=$(v ceiling.seal_file2.mbps); was=$(b ceiling.seal.mbps)
trow "sealing throughput, one core before and after, and with 2 threads" "1 thread $(fmt "$s1" 0) MB/s per CPU-second$([ -n "$was" ] && echo " (before $(fmt "$was" 0), $(fmt "$(div "$s1" "$was")" 2)x)"); 2 threads $(fmt "$s2" 0) MB/s wall ($(fmt "$(div "$s2" "$(v ceiling.seal_file1.mbps)")" 2)x one thread's wall)" "reported"
r=$(v msg100.ratio)
trow "100 B round trip <= 1.3x raw TCP" "$(fmt "$r" 2)x ($(fmt "$(v msg100.ovtp.median_us)") / $(fmt "$(v msg100.tcp.median_us)") µs)$([ -n "$tsv_before" ] && echo " [before $(fmt "$(b msg100.ratio)" 2)x]")" "$(verdict "$r" '<=' 1.3)"
bt=$(v batch100.per_s); was=$(b batch100.per_s)
# "No worse" allows 10% for the noise of a shared machine.
if [ -n "$was" ]; then
    trow "send_batch rate no worse than before (within 10%)" "$(fmt "$bt" 0) /s, before $(fmt "$was" 0) /s ($(fmt "$(div "$bt" "$was")" 2)x)" "$(verdict "$(div "$bt" "$was")" '>=' 0.9)"
    c3m=$(v connect3072.median_ms); c3b=$(b connect3072.median_ms)
    trow "RSA-3072 connection setup no worse than before (within 10%)" "$(fmt "$c3m") ms, before $(fmt "$c3b") ms ($(fmt "$(div "$c3m" "$c3b")" 2)x)" "$(verdict "$(div "$c3m" "$c3b")" '<=' 1.1)"
else
    trow "send_batch rate (no worse than before: run with OVTP_BEFORE)" "$(fmt "$bt" 0) /s" "n/a"
    trow "RSA-3072 connection setup (no worse than before: run with OVTP_BEFORE)" "$(fmt "$(v connect3072.median_ms)") ms" "n/a"
fi
echo "ovtp connection figures are in-process (no program start-up); \`ssh host true\` includes starting the ssh client and running \`true\` remotely."
