#!/usr/bin/env bash
# Side-by-side read throughput: oxtgt vs tgt (Debian tgtd), same-size file LUNs on the
# same filesystem, both on loopback, runs alternating. Prints each figure and the
# ratio oxtgt/tgt. Needs root (tgtd) and the packages tgt and libiscsi-bin.
#
#   bench/run.sh [seconds-per-run] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
rounds=${2:-2}
for p in tgt libiscsi-bin; do
    dpkg -s "$p" >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$p" >/dev/null; }
done
cargo build --release -q
work=$(mktemp -d /var/tmp/oxtgt-bench.XXXX)
ox_port=13260; tgt_port=13270
cleanup() {
    [ -n "${ox_pid:-}" ] && kill "$ox_pid" 2>/dev/null || true
    tgtadm --lld iscsi -C 9 --op delete --mode system >/dev/null 2>&1 || true
    if [ -n "${tgt_pid:-}" ]; then
        # tgtd ignores SIGTERM while targets exist: give it a moment, then SIGKILL.
        kill "$tgt_pid" 2>/dev/null || true
        sleep 1
        kill -9 "$tgt_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
# 1 GiB files, fully written so neither target reads holes.
for f in ox tgt; do dd if=/dev/urandom of="$work/$f.img" bs=1M count=1024 status=none; done

cat >"$work/oxtgt.toml" <<EOC
[server]
listen = ["127.0.0.1:$ox_port"]
[[target]]
name = "iqn.2026-11.org.oxtgt:bench"
open_access = true
[[target.lun]]
id = 0
backstore = "file"
path = "$work/ox.img"
EOC
OXTGT_LOG=warn target/release/oxtgt serve --config "$work/oxtgt.toml" >/dev/null &
ox_pid=$!
tgtd -f -C 9 --iscsi portal=127.0.0.1:$tgt_port >/dev/null 2>&1 &
tgt_pid=$!
disown "$tgt_pid"  # its SIGKILL at cleanup is expected; keep bash quiet about it
sleep 1
tgtadm -C 9 --lld iscsi --op new --mode target --tid 1 -T iqn.2026-11.org.tgt:bench
tgtadm -C 9 --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 -b "$work/tgt.img"
tgtadm -C 9 --lld iscsi --op bind --mode target --tid 1 -I ALL
ox_url=iscsi://127.0.0.1:$ox_port/iqn.2026-11.org.oxtgt:bench/0
tgt_url=iscsi://127.0.0.1:$tgt_port/iqn.2026-11.org.tgt:bench/1

# iscsi-perf's last report line reads "iops average N (M MB/s)".
perf() { timeout $((secs + 20)) iscsi-perf -t "$secs" "$@" 2>&1 | tr '\r' '\n' | grep -E 'iops average' | tail -1; }
num() { grep -oE "$1" <<<"$2" | grep -oE '[0-9]+' | head -1; }

echo "date: $(date -u +%F) machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, kernel $(uname -r)"
printf '%-14s %5s %12s %12s %12s %12s %7s\n' test round oxtgt-iops oxtgt-MB/s tgt-iops tgt-MB/s ratio
for name in "seq-128k-qd32:-b 256 -m 32" "rand-4k-qd32:-b 8 -m 32 -r"; do
    label=${name%%:*}; args=${name#*:}
    for r in $(seq 1 "$rounds"); do
        o=$(perf $args "$ox_url"); t=$(perf $args "$tgt_url")
        oi=$(num 'average [0-9]+' "$o"); om=$(num '[0-9]+ MB/s' "$o")
        ti=$(num 'average [0-9]+' "$t"); tm=$(num '[0-9]+ MB/s' "$t")
        ratio=$(awk -v a="${oi:-0}" -v b="${ti:-0}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')
        printf '%-14s %5s %12s %12s %12s %12s %7s\n' "$label" "$r" "${oi:-?}" "${om:-?}" "${ti:-?}" "${tm:-?}" "$ratio"
    done
done
