#!/usr/bin/env bash
# Target-side CPU cost that survives a noisy machine: user-space instructions oxtgt
# executes per 4 KiB READ and per 4 KiB WRITE, counted by valgrind's callgrind (an
# instruction count, not a time: the same binary and input give the same figure
# whatever else the machine runs). Kernel work (syscalls, TCP, the page cache) is
# not counted; `perf stat` cannot count instructions on these VMs.
#
# Each figure is (Ir over N2 commands - Ir over N1 commands) / (N2 - N1), so login,
# session set-up and other fixed costs cancel. One session, one command in flight,
# on a 64 MiB file LU in the page cache and on a RAM LU.
#
#   bench/cpu-cost.sh [N1] [N2]
#
# The daemon is target/dist/oxtgt, the packaged build (whole-program LTO); OXTGT_BIN
# runs another oxtgt binary (an older build, target/release/oxtgt) with the same load.
set -euo pipefail
cd "$(dirname "$0")/.."
n1=${1:-2000}
n2=${2:-6000}
dpkg -s valgrind >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null; }
cargo build --release -q --workspace
# The daemon as packaged: the dist profile (whole-program LTO, Cargo.toml).
cargo build --profile dist -q -p oxtgt
work=$(mktemp -d /var/tmp/oxtgt-cost.XXXX)
port=13290
cleanup() {
    [ -n "${vg_pid:-}" ] && kill "$vg_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
dd if=/dev/urandom of="$work/lu.img" bs=1M count=64 status=none
cat >"$work/oxtgt.toml" <<EOC
[server]
listen = ["127.0.0.1:$port"]
[[target]]
name = "iqn.2026-11.org.oxtgt:cost"
open_access = true
[[target.lun]]
id = 0
backstore = "file"
path = "$work/lu.img"
[[target.lun]]
id = 1
backstore = "ram"
size = "64MiB"
EOC
OXTGT_LOG=warn valgrind --tool=callgrind \
    --callgrind-out-file="$work/cg.out" "${OXTGT_BIN:-target/dist/oxtgt}" serve --config "$work/oxtgt.toml" \
    >"$work/vg.log" 2>&1 &
vg_pid=$!
for _ in $(seq 1 200); do
    (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
    sleep 0.1
done
# Instructions counted from a zeroing of the counters to a dump taken right after
# `ops` commands of one kind.
measure() { # lun read_pct ops
    callgrind_control -z "$vg_pid" >/dev/null
    target/release/oxload io 127.0.0.1:$port iqn.2026-11.org.oxtgt:cost "$1" 512 1 1 4096 rand "$2" 600 - 1 "$3" >/dev/null
    rm -f "$work"/cg.out.*
    callgrind_control -d "$vg_pid" >/dev/null
    sleep 0.5
    awk '/^summary:|^totals:/ {print $2; exit}' "$work"/cg.out.*
}
# Fill the LUs once so reads find data (and the file is in the page cache).
target/release/oxload io 127.0.0.1:$port iqn.2026-11.org.oxtgt:cost 0 512 1 8 65536 seq 0 600 - 1 1024 >/dev/null
target/release/oxload io 127.0.0.1:$port iqn.2026-11.org.oxtgt:cost 1 512 1 8 65536 seq 0 600 - 1 1024 >/dev/null
rev=$(git rev-parse --short HEAD)$( [ -z "$(git status --porcelain)" ] || echo -dirty)
echo "date: $(date -u +%F) binary ${OXTGT_BIN:-$rev (dist)} valgrind $(valgrind --version | sed 's/valgrind-//')"
printf '%-18s %14s\n' command instructions
for lu in "file:0" "ram:1"; do
    for kind in "read:100" "write:0"; do
        a=$(measure "${lu#*:}" "${kind#*:}" "$n1")
        b=$(measure "${lu#*:}" "${kind#*:}" "$n2")
        printf '%-18s %14s\n' "4k ${kind%%:*} (${lu%%:*})" "$(( (b - a) / (n2 - n1) ))"
    done
done
