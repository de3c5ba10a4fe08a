#!/usr/bin/env bash
# Disk-to-tape backup inside the target: 1 GiB of a file LU backed up to a tape LU
# by EXTENDED COPY (00h segments in 256 KiB variable blocks, then a filemark), beside
# the same backup done by the host through oxtgt (READ(16) of 1 MiB, WRITE(6) of
# 256 KiB blocks, WRITE FILEMARKS: what `dd if=/dev/sdX of=/dev/nst0 bs=256k` sends).
# Prints time, rate and the data bytes that crossed the iSCSI connection for each,
# and the ratio. The tape is rewound before each backup, so each overwrites the last.
#
#   bench/tape.sh [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-1}
cargo build --release -q --workspace
# The daemon as packaged: the dist profile (whole-program LTO, Cargo.toml).
cargo build --profile dist -q -p oxtgt
work=$(mktemp -d /var/tmp/oxtgt-tape.XXXX)
port=13290
cleanup() {
    [ -n "${ox_pid:-}" ] && kill "$ox_pid" 2>/dev/null && wait "$ox_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
dd if=/dev/urandom of="$work/disk.img" bs=1M count=1024 status=none
sync
cat >"$work/oxtgt.toml" <<EOC
[server]
listen = ["127.0.0.1:$port"]
[[target]]
name = "iqn.2026-11.org.oxtgt:tape"
open_access = true
[[target.lun]]
id = 0
backstore = "file"
path = "$work/disk.img"
[[target.lun]]
id = 1
type = "tape"
path = "$work/tapes"
size = "4GiB"
EOC
OXTGT_LOG=warn target/dist/oxtgt serve --config "$work/oxtgt.toml" >/dev/null &
ox_pid=$!
sleep 1
ep=(127.0.0.1:$port iqn.2026-11.org.oxtgt:tape)
num() { grep -oE "$1" <<<"$2" | grep -oE '[0-9.]+' | tail -1 || true; }
echo "date: $(date -u +%F) machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, kernel $(uname -r)"
printf '%5s %10s %6s %12s %10s %6s %12s %7s\n' round xcopy-ms GB/s xcopy-wire host-ms GB/s host-wire ratio
for r in $(seq 1 "$rounds"); do
    x=$(target/release/oxload tape "${ep[@]}" 0 512 1 xcopy 2>&1 | tail -1)
    h=$(target/release/oxload tape "${ep[@]}" 0 512 1 host 2>&1 | tail -1)
    xm=$(num ' ms [0-9.]+' "$x"); hm=$(num ' ms [0-9.]+' "$h")
    printf '%5s %10s %6s %12s %10s %6s %12s %7s\n' "$r" "$xm" "$(num 'GB/s [0-9.]+' "$x")" \
        "$(num 'wire_bytes [0-9]+' "$x")" "$hm" "$(num 'GB/s [0-9.]+' "$h")" \
        "$(num 'wire_bytes [0-9]+' "$h")" "$(awk -v a="$hm" -v b="$xm" 'BEGIN { printf "%.2f", a / b }')"
done
