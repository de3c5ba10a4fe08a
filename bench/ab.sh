#!/usr/bin/env bash
# A/B of two oxtgt builds on one setup: both daemons run side by side, each
# exporting its own 1 GiB file LU of random data on the same filesystem, and the
# same `oxload io` load goes to one, then the other, round after round. On the
# noisy 2-core VMs the same binary's CPU per command moves by 30 % between setups
# minutes apart (bench/RESULTS.md, session 12); alternating within one setup keeps
# that drift out of the comparison. Prints per round IOPS, the daemon's CPU time per
# command (user + system, from /proc) and its context switches per command, then
# the means.
#
#   bench/ab.sh BIN_A BIN_B [rounds] [seconds] [oxload io args...]
#
# The default load is 16 sessions of random 4 KiB writes (`16 1 4096 rand 0`:
# sessions, queue depth, bytes, pattern, read percent).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n '2,14p' "$0"; exit 2; }
bin_a=$(realpath "$1"); bin_b=$(realpath "$2")
rounds=${3:-5}
secs=${4:-10}
shift $(( $# < 4 ? $# : 4 ))
load=("$@")
[ ${#load[@]} -gt 0 ] || load=(16 1 4096 rand 0)
cargo build --release -q -p testkit --bin oxload
work=$(mktemp -d /var/tmp/oxtgt-ab.XXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
ports=(13560 13561)
bins=("$bin_a" "$bin_b")
for i in 0 1; do
    dd if=/dev/urandom of="$work/$i.img" bs=1M count=1024 status=none
    cat >"$work/$i.toml" <<EOC
[server]
listen = ["127.0.0.1:${ports[$i]}"]
[[target]]
name = "iqn.2026-11.org.oxtgt:ab"
open_access = true
[[target.lun]]
id = 0
backstore = "file"
path = "$work/$i.img"
EOC
    OXTGT_LOG=warn "${bins[$i]}" serve --config "$work/$i.toml" >/dev/null &
    pids+=($!)
done
sleep 1
tck=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
csw() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {s += $2} END {print s}'; }
echo "date: $(date -u +%F) machine: $(nproc) cores, kernel $(uname -r); A=$bin_a B=$bin_b; load: ${load[*]}, $secs s"
printf '%-6s %5s %10s %12s %10s\n' build round iops cpu_us/op csw/op
for r in $(seq 1 "$rounds"); do
    # A then B in odd rounds, B then A in even ones: whichever runs second in a
    # round gains (measured: about 10 % IOPS on the 2-core VM).
    order=$( [ $((r % 2)) = 1 ] && echo "0 1" || echo "1 0")
    for i in $order; do
        p=${pids[$i]}
        c0=$(cpu "$p"); s0=$(csw "$p")
        out=$(target/release/oxload io 127.0.0.1:${ports[$i]} iqn.2026-11.org.oxtgt:ab 0 512 \
            "${load[@]}" "$secs" - 2 2>&1 | tail -1)
        c1=$(cpu "$p"); s1=$(csw "$p")
        ops=$(grep -oE 'io ops [0-9]+' <<<"$out" | grep -oE '[0-9]+' || echo 0)
        iops=$(grep -oE 'iops [0-9]+' <<<"$out" | grep -oE '[0-9]+' || echo 0)
        [ "${ops:-0}" -gt 0 ] || { echo "oxload failed: $out" >&2; exit 1; }
        awk -v b="$([ $i = 0 ] && echo A || echo B)" -v r="$r" -v i="$iops" -v o="$ops" \
            -v c=$((c1 - c0)) -v s=$((s1 - s0)) -v t="$tck" \
            'BEGIN { printf "%-6s %5s %10d %12.1f %10.2f\n", b, r, i, c * 1e6 / t / o, s / o }'
    done
done | tee "$work/rows"
awk '{ n[$1]++; i[$1] += $3; c[$1] += $4; s[$1] += $5 }
     END { for (b in n) printf "%-6s  mean %10.0f %12.1f %10.2f\n", b, i[b] / n[b], c[b] / n[b], s[b] / n[b] }' \
    "$work/rows" | sort
