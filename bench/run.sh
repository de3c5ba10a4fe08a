#!/usr/bin/env bash
# Side-by-side throughput: oxtgt vs tgt (Debian tgtd), same-size file LUNs on the
# same filesystem, both on loopback, runs alternating. Reads with libiscsi's
# iscsi-perf (QD32, one session); writes with our pipelined generator `oxload io`
# (16 sessions, one command each in flight, two async threads) and, for comparison
# with earlier results, with the blocking `oxload write` (16 threads); sequential
# 128 KiB reads from a RAM LU beside one iperf3 stream over the same loopback; then
# the ATS heartbeat: p50/p99 latency of one-block COMPARE AND WRITE idle and while
# 16 other sessions write; last, what a 4 KiB buffered overwrite costs the kernel
# on the images' filesystem. Prints each figure and the ratio oxtgt/tgt (three
# decimals: a ratio checked against a threshold is not rounded up to it). Needs root
# (tgtd) and the packages tgt, libiscsi-bin and iperf3.
#
#   bench/run.sh [seconds-per-run] [rounds]
#
# The images go under /var/tmp, or under OXTGT_BENCH_DIR (another filesystem: the
# random-write rows depend on it, see the last line the run prints).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
rounds=${2:-2}
for p in tgt libiscsi-bin iperf3; do
    dpkg -s "$p" >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$p" >/dev/null; }
done
cargo build --release -q --workspace
# The daemon as packaged: the dist profile (whole-program LTO, Cargo.toml).
cargo build --profile dist -q -p oxtgt
work=$(mktemp -d "${OXTGT_BENCH_DIR:-/var/tmp}/oxtgt-bench.XXXX")
ox_port=13260; tgt_port=13270; iperf_port=13280
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
# 1 GiB files, fully written so neither target reads holes (copy-src feeds the ATS-under-copy run).
for f in ox tgt copy-src; do dd if=/dev/urandom of="$work/$f.img" bs=1M count=1024 status=none; done

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
# LUN 1 (file) is copied to LUN 2 (RAM) by EXTENDED COPY during the ATS run; LUN 3
# is the RAM LU the sequential reads are measured on.
[[target.lun]]
id = 1
backstore = "file"
path = "$work/copy-src.img"
size = "1GiB"
[[target.lun]]
id = 2
backstore = "ram"
size = "1GiB"
[[target.lun]]
id = 3
backstore = "ram"
size = "1GiB"
EOC
OXTGT_LOG=warn target/dist/oxtgt serve --config "$work/oxtgt.toml" >/dev/null &
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
num() { grep -oE "$1" <<<"$2" | grep -oE '[0-9]+' | tail -1 || true; }

echo "date: $(date -u +%F) machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, kernel $(uname -r)"
printf '%-14s %5s %12s %12s %12s %12s %7s\n' test round oxtgt-iops oxtgt-MB/s tgt-iops tgt-MB/s ratio
for name in "seq-128k-qd32:-b 256 -m 32" "rand-4k-qd32:-b 8 -m 32 -r"; do
    label=${name%%:*}; args=${name#*:}
    for r in $(seq 1 "$rounds"); do
        o=$(perf $args "$ox_url"); t=$(perf $args "$tgt_url")
        oi=$(num 'average [0-9]+' "$o"); om=$(num '[0-9]+ MB/s' "$o")
        ti=$(num 'average [0-9]+' "$t"); tm=$(num '[0-9]+ MB/s' "$t")
        ratio=$(awk -v a="${oi:-0}" -v b="${ti:-0}" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }')
        printf '%-14s %5s %12s %12s %12s %12s %7s\n' "$label" "$r" "${oi:-?}" "${om:-?}" "${ti:-?}" "${tm:-?}" "$ratio"
    done
done

# oxload prints "io ops N ... iops X MB/s Y p50_us ..." / "write iops N MB/s M" /
# "ats samples N p50_us A p99_us B max_us C".
ld() { timeout $((secs + 60)) target/release/oxload "$@" 2>&1 | tail -1 || true; }
ox_ep=(127.0.0.1:$ox_port iqn.2026-11.org.oxtgt:bench 0 512)
tgt_ep=(127.0.0.1:$tgt_port iqn.2026-11.org.tgt:bench 1 512)
# One round of `oxload io` on both targets, printed as a row: label round args...
io_row() {
    local label=$1 r=$2; shift 2
    local o t oi om ti tm ratio
    o=$(ld io "${ox_ep[@]}" "$@" 0 "$secs" - 2); t=$(ld io "${tgt_ep[@]}" "$@" 0 "$secs" - 2)
    oi=$(num 'iops [0-9]+' "$o"); om=$(num 'MB/s [0-9]+' "$o")
    ti=$(num 'iops [0-9]+' "$t"); tm=$(num 'MB/s [0-9]+' "$t")
    ratio=$(awk -v a="${oi:-0}" -v b="${ti:-0}" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }')
    printf '%-22s %5s %12s %12s %12s %12s %7s   p99 %s / %s us\n' "$label" "$r" "${oi:-?}" "${om:-?}" "${ti:-?}" "${tm:-?}" "$ratio" \
        "$(num 'p99_us [0-9]+' "$o")" "$(num 'p99_us [0-9]+' "$t")"
}
for name in "io-write-seq-128k-16s:16 1 131072 seq" "io-write-rand-4k-16s:16 1 4096 rand"; do
    label=${name%%:*}; read -r -a args <<<"${name#*:}"
    for r in $(seq 1 "$rounds"); do
        io_row "$label" "$r" "${args[@]}"
    done
    # The generator's ceiling: the same load on oxtgt's RAM LU (no storage I/O).
    c=$(ld io 127.0.0.1:$ox_port iqn.2026-11.org.oxtgt:bench 3 512 "${args[@]}" 0 "$secs" - 2)
    printf '%-22s %5s %12s %12s   (same generator, oxtgt RAM LU)\n' "$label" ceiling "$(num 'iops [0-9]+' "$c")" "$(num 'MB/s [0-9]+' "$c")"
done

# The same random writes after dropping both files from the page cache: writes then
# build small page-cache folios. Files written in 1 MiB pieces (dd, a copied image)
# sit in large folios, and ext4 walks every block of a folio on each 4 KiB write
# (about half of either target's CPU above); this shows the targets without that.
for f in ox tgt; do dd of="$work/$f.img" oflag=nocache conv=notrunc,fdatasync count=0 status=none; done
for r in $(seq 1 "$rounds"); do
    io_row io-write-rand-4k-cold "$r" 16 1 4096 rand
done

# Sequential 128 KiB reads from oxtgt's RAM LU (one session, QD32) beside what one
# iperf3 stream moves over the same loopback, alternating.
printf '\n%-22s %5s %12s %12s %7s\n' "ram-seq-128k-qd32" round oxtgt-MB/s iperf3-MB/s ratio
ld io 127.0.0.1:$ox_port iqn.2026-11.org.oxtgt:bench 3 512 1 32 1048576 seq 0 3 - 1 >/dev/null  # allocate the RAM LU
for r in $(seq 1 "$rounds"); do
    o=$(ld io 127.0.0.1:$ox_port iqn.2026-11.org.oxtgt:bench 3 512 1 32 131072 seq 100 "$secs" - 1)
    iperf3 -s -1 -B 127.0.0.1 -p $iperf_port >/dev/null 2>&1 &
    iperf_pid=$!
    sleep 0.5
    ip=$(iperf3 -c 127.0.0.1 -p $iperf_port -t "$secs" -f m 2>/dev/null | awk '/receiver/ {for (i = 1; i <= NF; i++) if ($i == "Mbits/sec") print $(i - 1)}' || true)
    wait "$iperf_pid" || true
    om=$(num 'MB/s [0-9]+' "$o")
    im=$(awk -v m="${ip:-0}" 'BEGIN { printf "%.0f", m * 1e6 / 8 / 1e6 }')
    ratio=$(awk -v a="${om:-0}" -v b="${im:-0}" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }')
    printf '%-22s %5s %12s %12s %7s\n' ram-seq-128k-qd32 "$r" "${om:-?}" "${im:-?}" "$ratio"
done
echo

for name in "write-seq-128k-16s:16 131072 seq" "write-rand-4k-16s:16 4096 rand"; do
    label=${name%%:*}; read -r -a args <<<"${name#*:}"
    for r in $(seq 1 "$rounds"); do
        o=$(ld write "${ox_ep[@]}" "${args[@]}" "$secs"); t=$(ld write "${tgt_ep[@]}" "${args[@]}" "$secs")
        oi=$(num 'iops [0-9]+' "$o"); om=$(num 'MB/s [0-9]+' "$o")
        ti=$(num 'iops [0-9]+' "$t"); tm=$(num 'MB/s [0-9]+' "$t")
        ratio=$(awk -v a="${oi:-0}" -v b="${ti:-0}" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }')
        printf '%-18s %5s %12s %12s %12s %12s %7s\n' "$label" "$r" "${oi:-?}" "${om:-?}" "${ti:-?}" "${tm:-?}" "$ratio"
    done
done

printf '\n%-26s %10s %10s %10s %10s\n' "ats (1-block CAW)" samples p50_us p99_us max_us
for target in ox tgt; do
    if [ "$target" = ox ]; then ep=("${ox_ep[@]}"); else ep=("${tgt_ep[@]}"); fi
    for w in 0 16 16+copy; do
        [ "$w" = 16+copy ] && [ "$target" = tgt ] && continue
        if [ "$w" = 16+copy ]; then
            a=$(ld ats "${ep[@]}" 16 65536 "$secs" 1 2)
        else
            a=$(ld ats "${ep[@]}" "$w" 65536 "$secs")
        fi
        printf '%-26s %10s %10s %10s %10s\n' "$target, $w writers of 64k" \
            "$(num 'samples [0-9]+' "$a")" "$(num 'p50_us [0-9]+' "$a")" "$(num 'p99_us [0-9]+' "$a")" "$(num 'max_us [0-9]+' "$a")"
        [ -n "$(num 'samples [0-9]+' "$a")" ] || echo "  ($target: $a)"
    done
done

# What one 4 KiB buffered overwrite costs this kernel on the images' filesystem, in
# large page-cache folios (a file written 1 MiB at a time, as the images above) at a
# folio's start and end, and in small folios (testkit::pagecache says how to read
# it): the random-write rows above depend on it as much as on either target.
printf '\npage cache (%s, kernel %s): %s\n' "$(df --output=fstype "$work" | tail -1)" "$(uname -r)" \
    "$(target/release/oxload overwrite "$work/probe.img" 2>&1)"
