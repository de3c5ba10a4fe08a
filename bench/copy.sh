#!/usr/bin/env bash
# Copy offload benchmark: 1 GiB LUN-to-LUN copies by EXTENDED COPY and by ODX
# (POPULATE TOKEN + WRITE USING TOKEN, sized as Windows sizes them from VPD 8Fh)
# against the same copy done by the host through oxtgt (READ + WRITE over iSCSI, 4 sessions), on RAM
# LUNs, file LUNs on ext4 (beside `cp` of the same bytes on that filesystem) and
# file LUNs on a loop-mounted XFS with reflink. Also oxtgt's peak RSS growth during
# each EXTENDED COPY. Needs root (loop mount) and xfsprogs.
#
#   bench/copy.sh [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}
command -v mkfs.xfs >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xfsprogs >/dev/null; }
cargo build --release -q --workspace
# The daemon as packaged: the dist profile (whole-program LTO, Cargo.toml).
cargo build --profile dist -q -p oxtgt
work=$(mktemp -d /var/tmp/oxtgt-copy.XXXX)
port=13280
cleanup() {
    [ -n "${ox_pid:-}" ] && kill "$ox_pid" 2>/dev/null && wait "$ox_pid" 2>/dev/null || true
    [ -n "${sampler:-}" ] && kill "$sampler" 2>/dev/null || true
    mountpoint -q "$work/xfs" && umount "$work/xfs"
    rm -rf "$work"
}
trap cleanup EXIT
mkdir "$work/xfs"
truncate -s 5G "$work/xfs.img"
mkfs.xfs -q -m reflink=1 "$work/xfs.img"
mount -o loop "$work/xfs.img" "$work/xfs"
# Sources fully written, so nothing is a hole; destinations allocated the same way.
for d in "$work" "$work/xfs"; do
    dd if=/dev/urandom of="$d/src.img" bs=1M count=1024 status=none
    dd if=/dev/zero of="$d/dst.img" bs=1M count=1024 status=none
done
sync
cat >"$work/oxtgt.toml" <<EOC
[server]
listen = ["127.0.0.1:$port"]
[[target]]
name = "iqn.2026-11.org.oxtgt:copy"
open_access = true
[[target.lun]]
id = 0
backstore = "ram"
size = "1GiB"
[[target.lun]]
id = 1
backstore = "ram"
size = "1GiB"
[[target.lun]]
id = 2
backstore = "file"
path = "$work/src.img"
[[target.lun]]
id = 3
backstore = "file"
path = "$work/dst.img"
[[target.lun]]
id = 4
backstore = "file"
path = "$work/xfs/src.img"
[[target.lun]]
id = 5
backstore = "file"
path = "$work/xfs/dst.img"
EOC
OXTGT_LOG=warn target/dist/oxtgt serve --config "$work/oxtgt.toml" >/dev/null &
ox_pid=$!
sleep 1
ep=(127.0.0.1:$port iqn.2026-11.org.oxtgt:copy)
ol() { target/release/oxload "$@" 2>&1 | tail -1; }
num() { grep -oE "$1" <<<"$2" | grep -oE '[0-9.]+' | tail -1 || true; }
rss() { awk '/VmRSS/{print $2}' "/proc/$ox_pid/status"; }
# Fill the RAM source from the ext4 one (host-side, so every page is written).
ol hostcopy "${ep[@]}" 2 512 0 4 >/dev/null

peak_during() { # runs "$@", prints the command's last line and the RSS growth in MiB
    local base; base=$(rss)
    ( peak=$base; while kill -0 "$ox_pid" 2>/dev/null; do r=$(rss); ((r > peak)) && peak=$r; echo "$peak" >"$work/peak"; sleep 0.01; done ) &
    sampler=$!
    local out; out=$("$@")
    sleep 0.05; kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true; sampler=
    echo "$out growth_mib $(( ($(cat "$work/peak") - base) / 1024 ))"
}

echo "date: $(date -u +%F) machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, kernel $(uname -r)"
printf '%-8s %5s %9s %6s %6s %9s %6s %8s %8s %8s %9s %7s %9s %6s %9s\n' luns round xcopy-ms GB/s x-rss odx-ms GB/s pt-ms max-pt max-wut max-wut-w o-rss host-ms GB/s cp-ms
for pair in "ram:0:1" "ext4:2:3" "xfs:4:5"; do
    IFS=: read -r label s d <<<"$pair"
    for r in $(seq 1 "$rounds"); do
        x=$(peak_during ol xcopy "${ep[@]}" "$s" 512 "$d")
        o=$(peak_during ol odx "${ep[@]}" "$s" 512 "$d")
        w=$(ol odx "${ep[@]}" "$s" 512 "$d" whole)
        h=$(ol hostcopy "${ep[@]}" "$s" 512 "$d" 4)
        cpms=-
        if [ "$label" != ram ]; then
            dir=$work; [ "$label" = xfs ] && dir=$work/xfs
            sync
            t0=$(date +%s%N); cp --reflink=never "$dir/src.img" "$dir/cp.img"; t1=$(date +%s%N)
            cpms=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) / 1e6 }')
            rm -f "$dir/cp.img"
        fi
        printf '%-8s %5s %9s %6s %6s %9s %6s %8s %8s %8s %9s %7s %9s %6s %9s\n' "$label" "$r" \
            "$(num ' ms [0-9.]+' "$x")" "$(num 'GB/s [0-9.]+' "$x")" "$(num 'growth_mib [0-9]+' "$x")" \
            "$(num ' ms [0-9.]+' "$o")" "$(num 'GB/s [0-9.]+' "$o")" "$(num ' pt_ms [0-9.]+' "$o")" \
            "$(num 'max_pt_ms [0-9.]+' "$o")" "$(num 'max_wut_ms [0-9.]+' "$o")" \
            "$(num 'max_wut_ms [0-9.]+' "$w")" "$(num 'growth_mib [0-9]+' "$o")" \
            "$(num ' ms [0-9.]+' "$h")" "$(num 'GB/s [0-9.]+' "$h")" "$cpms"
    done
done
# The copies must be exact.
cmp "$work/src.img" "$work/dst.img" && cmp "$work/xfs/src.img" "$work/xfs/dst.img" && echo "file copies verified with cmp"
