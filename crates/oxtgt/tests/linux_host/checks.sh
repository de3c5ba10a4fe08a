# shellcheck shell=bash disable=SC2046
# (word splitting of generated CDB bytes is intended throughout)
# The Linux host's checks, run in order by `run` in the guest; each check_NAME runs in
# its own `bash -eu -o pipefail`, so any failing command fails the check. Checks share
# the sessions `login` makes. The environment (portals, targets, CHAP) comes from the
# host's env file.

# shellcheck disable=SC2034 # read by `run`
CHECKS=(isolation login geometry vpd_tpc vpd_block_limits opcodes xfs fio thin
    compare_and_write xcopy_same_target xcopy_two_targets ddptctl_info persistent_reservations
    multipath resets tape tape_xcopy btape chap_md5 chap_sha256 chap_refused kernel_log)

OUT=/host/out
. /host/guest/env

fail() {
    echo "FAIL: $*"
    exit 1
}

# expect WHAT ACTUAL EXPECTED
expect() {
    [ "$2" = "$3" ] || fail "$1: got '$2', expected '$3'"
    echo "ok: $1 = $2"
}

# num TEXT: a decimal or 0x-prefixed number as sg3_utils prints it, in decimal.
num() {
    [ -n "$1" ] || fail "no number"
    echo $(($1))
}

# Asks the host to act on a portal path (cut C, restore C, kill A) and waits for it.
host() {
    local n=1
    while [ -e "$OUT/request-$n" ]; do n=$((n + 1)); done
    echo "$*" >"$OUT/.request-$n"
    mv "$OUT/.request-$n" "$OUT/request-$n"
    for _ in $(seq 300); do
        if [ -e "$OUT/ack-$n" ]; then
            echo "host: $* -> $(cat "$OUT/ack-$n")"
            return 0
        fi
        sleep 0.2
    done
    fail "the host did not answer '$*'"
}

# login TARGET PORTAL [iscsiadm node settings as NAME=VALUE...]
login() {
    local t=$1 p=$2
    shift 2
    iscsiadm -m node -o new -T "$t" -p "$p" >/dev/null
    for kv in "$@"; do
        iscsiadm -m node -T "$t" -p "$p" -o update -n "${kv%%=*}" -v "${kv#*=}"
    done
    # Explicit: a caller testing the exit code runs this without errexit.
    iscsiadm -m node -T "$t" -p "$p" --login || return
    udevadm settle -t 30
}

logout() {
    iscsiadm -m node -T "$1" -p "$2" --logout
    iscsiadm -m node -T "$1" -p "$2" -o delete
    udevadm settle -t 30
}

# disk TARGET LUN [PORTAL]: the block device of that LUN through that portal.
disk() {
    local link="/dev/disk/by-path/ip-${3:-$PORTAL_A}-iscsi-$1-lun-$2"
    for _ in $(seq 50); do
        [ -e "$link" ] && break
        sleep 0.2
    done
    [ -e "$link" ] || fail "no $link"
    readlink -f "$link"
}

# sg DEVICE: the SCSI generic node of a block device.
sg() {
    echo "/dev/$(ls "/sys/block/$(basename "$1")/device/scsi_generic")"
}

# The sense an sg3_utils command reported (its stderr and stdout), for matching.
sense_of() {
    "$@" 2>&1 && echo "(no error)" || true
}

drop_caches() {
    sync
    echo 3 >/proc/sys/vm/drop_caches
}

check_isolation() {
    # The portals' guest-side addresses, port 3260, are the one way out.
    try() { timeout 4 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }
    try "${PORTAL_A%:*}" 3260 || fail "portal A unreachable"
    try "${PORTAL_B%:*}" 3260 || fail "portal B unreachable"
    try "${PORTAL_C%:*}" 3260 || fail "portal C unreachable"
    echo "reachable: the three portals"
    ip route add default via 10.0.2.2
    echo "nameserver 10.0.2.3" >/etc/resolv.conf
    for a in "10.0.2.2 $HOST_PORT_A" "10.0.2.2 22" "10.0.2.3 53" "10.0.2.100 22" \
        "10.0.2.103 3260" "1.1.1.1 80" "151.101.2.132 80" "127.0.0.1 $HOST_PORT_A"; do
        # shellcheck disable=SC2086
        if try $a; then
            ip route del default
            fail "reachable: $a"
        fi
        echo "unreachable: $a"
    done
    if timeout 8 getent hosts deb.debian.org; then
        ip route del default
        fail "DNS answered"
    fi
    echo "no DNS"
    ip route del default
    rm /etc/resolv.conf
}

check_login() {
    # Explicit node records: no SendTargets discovery, whose answer names the
    # host-side portals.
    login "$T_HOST" "$PORTAL_A"
    login "$T_SECOND" "$PORTAL_A"
    iscsiadm -m session
    expect "sessions" "$(iscsiadm -m session | wc -l)" 2
    for l in 0 1 2 3; do disk "$T_HOST" $l >/dev/null; done
    disk "$T_SECOND" 0 >/dev/null
    # LUN 4 exists but is not in this initiator's ACL.
    sleep 1
    [ ! -e "/dev/disk/by-path/ip-$PORTAL_A-iscsi-$T_HOST-lun-4" ] || fail "LUN 4 visible"
    lsscsi -s
}

# geometry_of DEVICE SIZE LBS PBS: what the kernel made of one LUN.
geometry_of() {
    local d=$1 b q sd vpd
    b=$(basename "$d")
    q=/sys/block/$b/queue
    sd=$(ls -d /sys/block/"$b"/device/scsi_disk/*)
    vpd=$(sg_vpd -p bl "$d")
    echo "$vpd"
    vpd_field() { num "$(echo "$vpd" | sed -n "s/^ *$1: *\([0-9a-fx]*\).*/\1/p" | head -1)"; }
    local opt ws gran
    opt=$(vpd_field "Optimal transfer length")
    ws=$(vpd_field "Maximum write same length")
    gran=$(vpd_field "Optimal unmap granularity")
    expect "$b size" "$(blockdev --getsize64 "$d")" "$2"
    expect "$b logical_block_size" "$(cat $q/logical_block_size)" "$3"
    expect "$b physical_block_size" "$(cat $q/physical_block_size)" "$4"
    expect "$b optimal_io_size" "$(cat $q/optimal_io_size)" $((opt * $3))
    expect "$b discard_granularity" "$(cat $q/discard_granularity)" $((gran * $3))
    # sd caps a discard at 0x7fffff blocks (SD_MAX_WS16_BLOCKS) when the target
    # allows more.
    expect "$b discard_max_bytes" "$(cat $q/discard_max_bytes)" $((0x7fffff * $3))
    # sd rounds WRITE SAME's limit down to whole physical blocks.
    local per=$(($4 / $3))
    expect "$b write_zeroes_max_bytes" "$(cat $q/write_zeroes_max_bytes)" $((ws / per * per * $3))
    expect "$b provisioning_mode" "$(cat "$sd"/provisioning_mode)" unmap
    expect "$b thin_provisioning" "$(cat "$sd"/thin_provisioning)" 1
    expect "$b cache_type" "$(cat "$sd"/cache_type)" "write back"
    expect "$b FUA" "$(cat "$sd"/FUA)" 1
    expect "$b rotational" "$(cat $q/rotational)" 0
    sg_readcap -l "$d" | tee /tmp/readcap
    grep -q "lbpme=1, lbprz=1" /tmp/readcap || fail "$b: READ CAPACITY(16) not thin with LBPRZ"
}

check_geometry() {
    geometry_of "$(disk "$T_HOST" 0)" $((1 << 30)) 512 4096
    geometry_of "$(disk "$T_HOST" 1)" $((256 << 20)) 512 512
    geometry_of "$(disk "$T_HOST" 3)" $((64 << 20)) 4096 4096
}

check_vpd_tpc() {
    local d
    d=$(disk "$T_HOST" 1)
    sg_vpd -p tpc "$d" | tee /tmp/tpc
    tpc_field() { num "$(sed -n "s/^ *$1: *\([0-9a-fx]*\).*/\1/p" /tmp/tpc | head -1)"; }
    # RECEIVE COPY OPERATING PARAMETERS (84h/03h), the same limits in LID1's own
    # answer: bytes 8-9 CSCD descriptors, 10-11 segment descriptors, 12-15 list
    # length, 20-23 inline data.
    sg_raw -r 512 -o /tmp/rcop "$(sg "$d")" 84 03 00 00 00 00 00 00 00 00 00 00 02 00 00 00
    be() { od -An -tu1 -j "$1" -N "$2" /tmp/rcop | awk '{v=0; for(i=1;i<=NF;i++) v=v*256+$i; print v}'; }
    expect "maximum CSCD descriptor count" "$(tpc_field 'Maximum CSCD descriptor count')" "$(be 8 2)"
    expect "maximum segment descriptor count" "$(tpc_field 'Maximum segment descriptor count')" "$(be 10 2)"
    expect "maximum descriptor list length" "$(tpc_field 'Maximum descriptor list length')" "$(be 12 4)"
    expect "maximum inline data length" "$(tpc_field 'Maximum inline data length')" "$(be 20 4)"
    grep -qi "supported descriptors" /tmp/tpc || fail "no Supported Descriptors descriptor"
    grep -qi "block -> block\|0x02" /tmp/tpc || fail "block to block segment not listed"
}

# unmap_list N: an UNMAP parameter list of N one-block descriptors, 8 blocks apart.
unmap_list() {
    local n=$1 i l esc
    # The list as \xHH escapes first (no subshell per descriptor: forks are slow
    # under emulation), then turned into bytes by one printf %b.
    esc=$(
        l=$((6 + 16 * n))
        printf '\\x%02x\\x%02x' $((l >> 8 & 255)) $((l & 255))
        l=$((16 * n))
        printf '\\x%02x\\x%02x\\x00\\x00\\x00\\x00' $((l >> 8 & 255)) $((l & 255))
        for ((i = 0; i < n; i++)); do
            l=$((i * 8))
            printf '\\x00\\x00\\x00\\x00\\x%02x\\x%02x\\x%02x\\x%02x\\x00\\x00\\x00\\x01\\x00\\x00\\x00\\x00' \
                $((l >> 24 & 255)) $((l >> 16 & 255)) $((l >> 8 & 255)) $((l & 255))
        done
    )
    printf '%b' "$esc"
}

check_vpd_block_limits() {
    local d s
    d=$(disk "$T_HOST" 1)
    s=$(sg "$d")
    sg_vpd -p bl "$d" | tee /tmp/bl
    bl() { num "$(sed -n "s/^ *$1: *\([0-9a-fx]*\).*/\1/p" /tmp/bl | head -1)"; }
    local caw ws xfer descs
    caw=$(bl "Maximum compare and write length")
    ws=$(bl "Maximum write same length")
    xfer=$(bl "Maximum transfer length")
    descs=$(bl "Maximum unmap block descriptor count")
    echo "limits: CAW $caw, WRITE SAME $ws, transfer $xfer, UNMAP descriptors $descs"
    # At each limit the command is served; one past it is refused with INVALID FIELD
    # IN CDB (or parameter list for UNMAP).
    sg_write_same --16 --lba=0 --num="$ws" "$s"
    sense_of sg_write_same --16 --lba=0 --num=$((ws + 1)) "$s" | tee /tmp/o
    grep -qi "illegal request" /tmp/o || fail "WRITE SAME of $((ws + 1)) blocks not refused"
    head -c $((caw * 512 * 2)) /dev/zero >/tmp/caw
    sg_compare_and_write --in=/tmp/caw --lba=0 --num="$caw" --xferlen=$((caw * 1024)) "$s"
    # 255 is also the most the CDB's one-byte NUMBER OF LOGICAL BLOCKS can ask.
    expect "maximum compare and write length" "$caw" 255
    # One READ(16) of exactly the maximum. One block more cannot leave this host:
    # the kernel refuses SG_IO of 8 MiB + 512 bytes with EINVAL before sending it
    # (seen with 6.1); the e2e tests send it and get INVALID FIELD IN CDB.
    sg_dd if="$s" of=/dev/null bs=512 bpt="$xfer" count="$xfer" cdbsz=16
    # The kernel sizes its own requests to the optimal transfer length.
    local opt
    opt=$(bl "Optimal transfer length")
    expect "max_sectors_kb" "$(cat /sys/block/"$(basename "$d")"/queue/max_sectors_kb)" $((opt * 512 / 1024))
    # sg_unmap takes at most 1024 descriptors: UNMAP through sg_raw instead.
    unmap_list "$descs" >/tmp/unmap
    sg_raw -s $((8 + 16 * descs)) -i /tmp/unmap "$s" 42 00 00 00 00 00 00 \
        $(printf '%02x %02x' $(((8 + 16 * descs) >> 8)) $(((8 + 16 * descs) & 255))) 00
    unmap_list $((descs + 1)) >/tmp/unmap
    sense_of sg_raw -s $((8 + 16 * (descs + 1))) -i /tmp/unmap "$s" 42 00 00 00 00 00 00 \
        $(printf '%02x %02x' $(((8 + 16 * (descs + 1)) >> 8)) $(((8 + 16 * (descs + 1)) & 255))) 00 | tee /tmp/o
    grep -qi "illegal request" /tmp/o || fail "UNMAP with $((descs + 1)) descriptors not refused"
}

check_opcodes() {
    # REPORT SUPPORTED OPERATION CODES against what the LU does: every listed
    # command is recognised (sent with zeroed fields it may be refused for its
    # fields, never as an unknown opcode), and every unlisted one is refused with
    # INVALID COMMAND OPERATION CODE. Run on the scratch LU.
    local d s
    d=$(disk "$T_HOST" 2)
    s=$(sg "$d")
    sg_opcodes -n "$s" | tee /tmp/ops
    # Lines: " opcode [service action] [cdb size] name"; keep "OP SA" pairs.
    awk '/^ *[0-9a-f][0-9a-f] /{ if ($2 ~ /^[0-9a-f]+$/ && length($2) <= 4 && $3 ~ /^[0-9]+$/) print $1, $2; else print $1, "-" }' /tmp/ops >/tmp/listed
    local n
    n=$(wc -l </tmp/listed)
    echo "listed: $n commands"
    [ "$n" -ge 30 ] || fail "only $n commands listed"
    # One process per command sent (sg_raw): forks are slow under TCG, so the
    # listing, the CDB lengths and the CDBs are kept in the shell itself.
    local -A sas=()
    local op sa
    while read -r op sa; do
        sas[$op]+="$sa "
    done </tmp/listed
    local bad=0 len cdb zeros out i
    for ((op_dec = 0; op_dec < 256; op_dec++)); do
        # sg_raw 1.46 does not send 60h-7Fh as SCSI (it answers "NVMe Result"
        # without a command reaching the target); the device-server tests cover them.
        ((op_dec >= 96 && op_dec <= 127)) && continue
        printf -v op '%02x' "$op_dec"
        case $((op_dec >> 5)) in
        0) len=6 ;;
        1 | 2) len=10 ;;
        3 | 5) len=12 ;;
        *) len=16 ;;
        esac
        zeros=""
        for ((i = 3; i <= len; i++)); do zeros+="00 "; done
        if [ -n "${sas[$op]:-}" ]; then
            for sa in ${sas[$op]}; do
                if [ "$sa" = "-" ]; then
                    cdb="$op 00 $zeros"
                else
                    # The service action: byte 1, low 5 bits.
                    printf -v cdb '%s %02x %s' "$op" $((0x$sa)) "$zeros"
                fi
                # shellcheck disable=SC2086
                out=$(sg_raw -R "$s" $cdb 2>&1) || true
                if [[ ${out,,} == *"invalid command operation code"* ]]; then
                    echo "listed but unknown: $op/$sa"
                    bad=1
                fi
            done
        else
            # shellcheck disable=SC2086
            out=$(sg_raw -R "$s" $op 00 $zeros 2>&1) || true
            if [[ ${out,,} != *"invalid command operation code"* ]]; then
                echo "not listed but served: $op: ${out//$'\n'/ }"
                bad=1
            fi
        fi
    done
    # Zeroed fields stop the LU (START STOP UNIT) and reserve it (RESERVE(6)):
    # start it and release it again.
    sg_raw "$s" 17 00 00 00 00 00 >/dev/null 2>&1 || true
    sg_start --start "$s"
    sg_turs "$s" || sg_turs "$s"
    [ "$bad" -eq 0 ] || fail "REPORT SUPPORTED OPERATION CODES disagrees with the LU"
}

check_xfs() {
    local d
    d=$(disk "$T_HOST" 0)
    mkfs.xfs -f -q "$d"
    mkdir -p /mnt/xfs
    mount "$d" /mnt/xfs
    mkdir /mnt/xfs/tree
    cp -a /usr/lib/x86_64-linux-gnu /usr/share/perl* /usr/sbin /mnt/xfs/tree/ 2>/dev/null || cp -a /usr/lib/x86_64-linux-gnu /usr/sbin /mnt/xfs/tree/
    head -c $((96 << 20)) /dev/urandom >/mnt/xfs/big
    (cd /mnt/xfs && find . -type f -print0 | sort -z | xargs -0 sha256sum) >/tmp/sums
    echo "files: $(wc -l </tmp/sums), bytes: $(du -sb /mnt/xfs | cut -f1)"
    sync
    umount /mnt/xfs
    drop_caches
    mount "$d" /mnt/xfs
    (cd /mnt/xfs && sha256sum --quiet -c /tmp/sums) || fail "files differ after remount"
    echo "remounted: every file's sha256 matches"
    umount /mnt/xfs
    xfs_repair -n "$d"
}

check_fio() {
    local d
    d=$(disk "$T_HOST" 1)
    fio --name=verify --filename="$d" --direct=1 --ioengine=libaio --iodepth=32 \
        --rw=randrw --bs=4k --size=128M --time_based --runtime=20 \
        --verify=crc32c --verify_backlog=1024 --verify_fatal=1 \
        --output=/tmp/fio.out
    cat /tmp/fio.out
    grep -q "err= 0" /tmp/fio.out || fail "fio reported errors"
    ! grep -qi "verify.*fail\|bad magic\|crc32c: verify failed" /tmp/fio.out || fail "fio verification failed"
}

# lba_status DEVICE LBA: the first descriptor's provisioning status word.
lba_status() {
    sg_get_lba_status --lba="$2" --maxlen=64 "$1" | tee -a /tmp/lbas | grep -m1 -oiE "mapped|deallocated|anchored" | head -1
}

check_thin() {
    local d s
    d=$(disk "$T_HOST" 1)
    s=$(sg "$d")
    # Written, then discarded with blkdiscard (UNMAP): deallocated, reads zeros.
    dd if=/dev/urandom of="$d" bs=1M count=16 oflag=direct status=none
    expect "after writing" "$(lba_status "$s" 0)" mapped
    blkdiscard -o 0 -l $((16 << 20)) "$d"
    expect "after blkdiscard" "$(lba_status "$s" 0)" deallocated
    cmp -n $((16 << 20)) <(dd if="$d" bs=1M count=16 iflag=direct status=none) /dev/zero || fail "discarded range not zero"
    # WRITE SAME(16) with UNMAP.
    dd if=/dev/urandom of="$d" bs=1M count=8 seek=32 oflag=direct status=none
    expect "LBA 65536 after writing" "$(lba_status "$s" 65536)" mapped
    sg_write_same --16 --unmap --lba=65536 --num=16384 "$s"
    expect "LBA 65536 after WRITE SAME with UNMAP" "$(lba_status "$s" 65536)" deallocated
    # Zeroing (BLKZEROOUT: the kernel's WRITE SAME).
    dd if=/dev/urandom of="$d" bs=1M count=8 seek=64 oflag=direct status=none
    blkdiscard -z -o $((64 << 20)) -l $((8 << 20)) "$d"
    cmp -n $((8 << 20)) <(dd if="$d" bs=1M count=8 skip=64 iflag=direct status=none) /dev/zero || fail "zeroed range not zero"
    echo "zeroout: 8 MiB read back as zeros"
}

check_compare_and_write() {
    local d s
    d=$(disk "$T_HOST" 1)
    s=$(sg "$d")
    head -c 512 /dev/urandom >/tmp/a
    head -c 512 /dev/urandom >/tmp/b
    dd if=/tmp/a of="$d" bs=512 seek=100 oflag=direct status=none
    cat /tmp/a /tmp/b >/tmp/ab
    sg_compare_and_write --in=/tmp/ab --lba=100 --num=1 --xferlen=1024 "$s"
    dd if="$d" bs=512 skip=100 count=1 iflag=direct status=none >/tmp/now
    cmp /tmp/now /tmp/b || fail "COMPARE AND WRITE did not write"
    echo "match: written"
    # A compare buffer that differs from the medium first at byte 77.
    cp /tmp/b /tmp/c
    local byte
    byte=$(od -An -tu1 -j77 -N1 /tmp/b | tr -d ' ')
    printf "$(printf '\\%03o' $((byte ^ 255)))" | dd of=/tmp/c bs=1 seek=77 conv=notrunc status=none
    cmp -l /tmp/b /tmp/c >/tmp/diff || true
    expect "test buffer's differing byte (1-based)" "$(awk '{print $1}' /tmp/diff | tr '\n' ' ')" "78 "
    cat /tmp/c /tmp/a >/tmp/ca
    sense_of sg_compare_and_write -v --in=/tmp/ca --lba=100 --num=1 --xferlen=1024 "$s" | tee /tmp/o
    grep -qi "miscompare" /tmp/o || fail "no MISCOMPARE"
    # The offset of the first differing byte, in the sense data's INFORMATION field.
    grep -q "Miscompare at byte offset: 77 " /tmp/o || fail "miscompare offset is not 77"
    dd if="$d" bs=512 skip=100 count=1 iflag=direct status=none >/tmp/now
    cmp /tmp/now /tmp/b || fail "a miscompare changed the data"
    echo "miscompare: offset 77, data unchanged"
}

# xcopy_check FROM TO: EXTENDED COPY of 16 MiB, compared.
xcopy_check() {
    dd if=/dev/urandom of="$1" bs=1M count=16 oflag=direct status=none
    sg_xcopy if="$(sg "$1")" of="$(sg "$2")" bs=512 count=32768 -v
    drop_caches
    cmp <(dd if="$1" bs=1M count=16 iflag=direct status=none) \
        <(dd if="$2" bs=1M count=16 iflag=direct status=none) || fail "copy differs"
    echo "16 MiB copied by EXTENDED COPY and compared"
}

check_xcopy_same_target() {
    xcopy_check "$(disk "$T_HOST" 1)" "$(disk "$T_HOST" 2)"
}

check_xcopy_two_targets() {
    xcopy_check "$(disk "$T_HOST" 1)" "$(disk "$T_SECOND" 0)"
}

check_ddptctl_info() {
    # ddptctl decodes the third-party copy page (8Fh) the way ddpt's ODX mode reads
    # it: the ROD limits and the ROD types must be there and agree with the limits
    # POPULATE TOKEN and WRITE USING TOKEN enforce (64 ranges, 256 MiB per token,
    # 64 MiB optimal per WRITE USING TOKEN).
    ddptctl --info "$(sg "$(disk "$T_HOST" 1)")" | tee /tmp/info
    grep -qiE "maximum range descriptors: *64" /tmp/info || fail "ROD limits: range descriptors"
    grep -qiE "optimal bytes to token per segment: *268435456" /tmp/info || fail "ROD limits: bytes to token"
    grep -qiE "optimal bytes from token per segment: *67108864" /tmp/info || fail "ROD limits: bytes from token"
    grep -qi "block device zero" /tmp/info || fail "no block device zero ROD type"
    grep -qi "access upon reference" /tmp/info || fail "no access upon reference ROD type"
}

# The paths target through both portals, with the session timeout a multipath host
# uses: a lost connection fails its path after 5 s instead of queueing I/O for the
# default 2 minutes (the other targets keep the default, so that a reconnect
# completes their queued I/O).
paths_login() {
    iscsiadm -m session | grep -q "$PORTAL_B.* $T_PATHS" ||
        login "$T_PATHS" "$PORTAL_B" node.session.timeo.replacement_timeout=5
    iscsiadm -m session | grep -q "$PORTAL_C.* $T_PATHS" ||
        login "$T_PATHS" "$PORTAL_C" node.session.timeo.replacement_timeout=5
}

check_persistent_reservations() {
    # Two I_T nexuses to one LU: the sessions through portals B and C.
    paths_login
    # Through the sg nodes: closing a block device opened for writing makes udev
    # probe it, and that probe would take the unit attention this check looks for.
    local a b
    a=$(sg "$(disk "$T_PATHS" 0 "$PORTAL_B")")
    b=$(sg "$(disk "$T_PATHS" 0 "$PORTAL_C")")
    sg_persist --out --register --param-sark=0xa1 "$a"
    sg_persist --out --register --param-sark=0xb2 "$b"
    sg_persist --in --read-keys "$a" | tee /tmp/keys
    grep -q 0xa1 /tmp/keys && grep -q 0xb2 /tmp/keys || fail "keys not both registered"
    # Write Exclusive, Registrants Only: both registered paths may write.
    sg_persist --out --reserve --param-rk=0xa1 --prout-type=5 "$a"
    sg_persist --in --read-reservation "$b" | tee /tmp/res
    grep -q "Key=0xa1" /tmp/res || fail "reservation not held by 0xa1"
    grep -qi "type: Write Exclusive, registrants only" /tmp/res || fail "wrong type"
    sg_persist --out --preempt --param-rk=0xb2 --param-sark=0xa1 --prout-type=5 "$b"
    sg_persist --in --read-keys "$b" | tee /tmp/keys
    ! grep -q 0xa1 /tmp/keys || fail "preempted key still registered"
    sg_persist --in --read-reservation "$b" | tee /tmp/res
    grep -q "Key=0xb2" /tmp/res || fail "reservation not moved to 0xb2"
    sg_persist --out --release --param-rk=0xb2 --prout-type=5 "$b"
    sg_persist --in --read-reservation "$b" | tee /tmp/res
    grep -qi "no reservation" /tmp/res || fail "still reserved after release"
    sg_persist --out --clear --param-rk=0xb2 "$b"
    # The preempted nexus learns of it from its next command, then sees no keys.
    sense_of sg_turs "$a" | tee /tmp/o
    grep -qi "registrations preempted" /tmp/o || fail "no REGISTRATIONS PREEMPTED on the preempted path"
    sg_persist --in --read-keys "$a" | tee /tmp/keys
    grep -qi "no registered" /tmp/keys || fail "keys left after clear"
}

mpath_dev() {
    local a
    a=$(basename "$(disk "$T_PATHS" 0 "$PORTAL_B")")
    for _ in $(seq 60); do
        local h
        h=$(ls /sys/block/"$a"/holders 2>/dev/null | head -1)
        if [ -n "$h" ]; then
            echo "/dev/$h"
            return
        fi
        sleep 0.5
    done
    fail "no multipath map over $a"
}

# active_paths MAP: paths multipathd counts as active and ready.
active_paths() {
    multipath -ll "$1" | grep -cE "active ready +running" || true
}

check_multipath() {
    paths_login
    pgrep -x multipathd >/dev/null || multipathd
    local m
    m=$(mpath_dev)
    local pa
    pa=$(basename "$(disk "$T_PATHS" 0 "$PORTAL_C")")
    echo "$pa $(basename "$(readlink -f /sys/block/"$pa"/device)")" >"$OUT/multipath-members"
    multipath -ll
    for _ in $(seq 30); do [ "$(active_paths "$m")" = 2 ] && break; sleep 1; done
    expect "active paths" "$(active_paths "$m")" 2
    fio --name=mp --filename="$m" --direct=1 --ioengine=libaio --iodepth=16 \
        --rw=randwrite --bs=4k --size=64M --time_based --runtime=40 \
        --verify=crc32c --verify_backlog=512 --verify_fatal=1 --output=/tmp/mp.out &
    local fio=$!
    sleep 8
    # Portal C serves only this target's second path, so the cut touches nothing else.
    trap 'host restore C' EXIT
    host cut C
    for _ in $(seq 30); do [ "$(active_paths "$m")" = 1 ] && break; sleep 1; done
    multipath -ll "$m"
    expect "active paths with C cut" "$(active_paths "$m")" 1
    sleep 8
    host restore C
    for _ in $(seq 60); do [ "$(active_paths "$m")" = 2 ] && break; sleep 1; done
    multipath -ll "$m"
    expect "active paths after C is back" "$(active_paths "$m")" 2
    wait "$fio" || { cat /tmp/mp.out; fail "fio on the multipath device failed"; }
    cat /tmp/mp.out
    grep -q "err= 0" /tmp/mp.out || fail "I/O errors on the multipath device"
}

check_resets() {
    # Writes with checksums, interrupted by an LU reset, a target reset and a killed
    # connection; then every block is read back and verified.
    local d s job
    d=$(disk "$T_HOST" 1)
    s=$(sg "$d")
    job=(--name=resets --filename="$d" --direct=1 --ioengine=libaio --iodepth=32
        --rw=randwrite --bs=4k --size=96M --verify=crc32c --verify_fatal=1)
    local before
    before=$(dmesg | wc -l)
    fio "${job[@]}" --do_verify=0 --output=/tmp/w.out &
    local fio=$!
    sleep 4
    sg_reset --device "$s"
    echo "LU reset done"
    sleep 3
    sg_reset --target "$s"
    echo "target reset done"
    sleep 3
    host kill A
    wait "$fio" || { cat /tmp/w.out; fail "writes failed across the resets"; }
    cat /tmp/w.out
    drop_caches
    fio "${job[@]}" --verify_only --output=/tmp/v.out || { cat /tmp/v.out; fail "verification failed"; }
    cat /tmp/v.out
    dmesg | tail -n +$((before + 1)) | tee /tmp/dmesg
    ! grep -E "I/O error|critical (target|medium)|Medium Error|Hardware Error" /tmp/dmesg || fail "I/O errors in the kernel log"
}

chap_login() {
    login "$T_SECURE" "$PORTAL_A" node.session.auth.authmethod=CHAP \
        node.session.auth.chap_algs="$1" \
        node.session.auth.username="$CHAP_USER" node.session.auth.password="$2" \
        node.session.auth.username_in="$CHAP_TARGET_USER" node.session.auth.password_in="$3"
}

# chap_works ALG: a mutual CHAP login with ALG, the LU in use, logout.
chap_works() {
    chap_login "$1" "$CHAP_SECRET" "$CHAP_TARGET_SECRET"
    local d
    d=$(disk "$T_SECURE" 0)
    dd if=/dev/urandom of=/tmp/c bs=64k count=1 status=none
    dd if=/tmp/c of="$d" bs=64k oflag=direct status=none
    cmp /tmp/c <(dd if="$d" bs=64k count=1 iflag=direct status=none)
    logout "$T_SECURE" "$PORTAL_A"
    echo "mutual CHAP with $1: logged in, 64 KiB written and read back"
}

check_chap_md5() {
    chap_works MD5
}

check_chap_sha256() {
    chap_works SHA256
}

check_chap_refused() {
    local rc=0
    chap_login SHA256 wrong-secret-000000 "$CHAP_TARGET_SECRET" || rc=$?
    iscsiadm -m node -T "$T_SECURE" -p "$PORTAL_A" -o delete || true
    # 24: ISCSI_ERR_LOGIN_AUTH_FAILED
    expect "iscsiadm exit code, wrong secret" "$rc" 24
    rc=0
    chap_login SHA256 "$CHAP_SECRET" wrong-target-secret-0 || rc=$?
    iscsiadm -m node -T "$T_SECURE" -p "$PORTAL_A" -o delete || true
    # The initiator refuses the target: 19, ISCSI_ERR_FATAL_LOGIN.
    expect "iscsiadm exit code, target proves a wrong secret" "$rc" 19
    ! iscsiadm -m session | grep -q "$T_SECURE" || fail "a refused login left a session"
}

# mt_field NAME: a number from `mt status` ("File number=3, block number=0").
mt_field() {
    mt -f /dev/nst0 status | tr ',' '\n' | sed -n "s/^ *$1=\(-\?[0-9]*\).*/\1/p" | head -1
}

check_tape() {
    login "$T_TAPE" "$PORTAL_A"
    modprobe st
    udevadm settle -t 30
    for _ in $(seq 50); do [ -e /dev/nst0 ] && break; sleep 0.2; done
    [ -e /dev/nst0 ] || fail "no /dev/nst0"
    lsscsi -g | grep -i tape
    dmesg | grep -i " st[0-9]\| st " | tail -3
    mt -f /dev/nst0 status
    mt -f /dev/nst0 rewind
    # Three archives in variable mode (tar's 10240-byte records, then 64 KiB), each
    # closed with a filemark by st. (/usr/share/doc is empty in this image.)
    mkdir -p /tmp/t3
    for i in 1 2 3 4 5; do head -c $((i * 1048576 + i * 777)) /dev/urandom >/tmp/t3/f$i; done
    tar -cf /dev/nst0 -C /usr/bin .
    tar -cf /dev/nst0 -C /etc .
    tar -b 128 -cf /dev/nst0 -C /tmp/t3 .
    expect "file number after three archives" "$(mt_field 'File number')" 3
    mt -f /dev/nst0 tell
    # Read each back from its own position and compare with the tree.
    mt -f /dev/nst0 rewind
    expect "file number after rewind" "$(mt_field 'File number')" 0
    mkdir -p /tmp/x1 /tmp/x2 /tmp/x3
    tar -tvf /dev/nst0 >/tmp/list1
    expect "archive 1 entries" "$(wc -l </tmp/list1)" "$(cd /usr/bin && find . | wc -l)"
    mt -f /dev/nst0 rewind
    tar -xf /dev/nst0 -C /tmp/x1
    mt -f /dev/nst0 fsf 1
    tar -xf /dev/nst0 -C /tmp/x2
    mt -f /dev/nst0 fsf 1
    tar -b 128 -xf /dev/nst0 -C /tmp/x3
    diff -r --no-dereference /usr/bin /tmp/x1 || fail "archive 1 differs"
    diff -r --no-dereference /etc /tmp/x2 || fail "archive 2 differs"
    diff -r /tmp/t3 /tmp/x3 || fail "archive 3 differs"
    echo "ok: three archives read back and compared"
    # Positioning: end of data, back over filemarks, seek/tell.
    mt -f /dev/nst0 eod
    expect "file number at EOD" "$(mt_field 'File number')" 3
    mt -f /dev/nst0 bsf 2
    mt -f /dev/nst0 fsf 1
    tar -b 128 -tf /dev/nst0 >/dev/null
    mt -f /dev/nst0 rewind
    mt -f /dev/nst0 fsf 2
    local at
    at=$(mt -f /dev/nst0 tell | sed -n 's/^At block \([0-9]*\).*/\1/p')
    [ -n "$at" ] && [ "$at" -gt 0 ] || fail "mt tell said '$at'"
    mt -f /dev/nst0 rewind
    mt -f /dev/nst0 seek "$at"
    expect "tell after seek" "$(mt -f /dev/nst0 tell | sed -n 's/^At block \([0-9]*\).*/\1/p')" "$at"
    tar -b 128 -tf /dev/nst0 >/tmp/list3
    grep -q f5 /tmp/list3 || fail "seek did not land on archive 3"
    # Fixed 512-byte blocks: a fourth archive appended at end of data.
    mt -f /dev/nst0 eod
    mt -f /dev/nst0 setblk 512
    mt -f /dev/nst0 status | grep -i "block size\|Tape block size"
    tar -b 20 -cf /dev/nst0 -C /tmp/t3 .
    mt -f /dev/nst0 rewind
    mt -f /dev/nst0 fsf 3
    mkdir -p /tmp/x4
    tar -b 20 -xf /dev/nst0 -C /tmp/x4
    diff -r /tmp/t3 /tmp/x4 || fail "fixed-mode archive differs"
    echo "ok: fixed-mode archive read back"
    mt -f /dev/nst0 setblk 0
    # dd of a whole file through the rewinding device, variable blocks.
    mt -f /dev/nst0 eod
    dd if=/tmp/t3/f5 of=/dev/nst0 bs=65536 status=none
    mt -f /dev/nst0 bsf 1
    mt -f /dev/nst0 bsf 1
    mt -f /dev/nst0 fsf 1
    dd if=/dev/nst0 of=/tmp/f5.back bs=65536 status=none
    cmp /tmp/t3/f5 /tmp/f5.back || fail "dd round trip differs"
    # Unload: no medium; load: back at the start.
    mt -f /dev/nst0 offline
    if mt -f /dev/nst0 status 2>&1 | grep -q "ONLINE"; then fail "still online after unload"; fi
    mt -f /dev/nst0 load
    mt -f /dev/nst0 status
    expect "file number after load" "$(mt_field 'File number')" 0
    tar -tf /dev/nst0 >/dev/null
    logout "$T_TAPE" "$PORTAL_A"
}

# hexbytes WIDTH VALUE: VALUE big-endian in WIDTH bytes, as printf %b escapes.
hexbytes() {
    local w=$1 v=$2 i out=""
    for ((i = w - 1; i >= 0; i--)); do
        out+=$(printf '\\x%02x' $(((v >> (8 * i)) & 255)))
    done
    echo -n "$out"
}

# naa_of SYSFS_WWID: the 16 bytes of an "naa.6..." wwid, as printf %b escapes.
naa_of() {
    local hex
    hex=$(sed -n 's/^naa\.\([0-9a-fA-F]\{32\}\).*/\1/p' "$1")
    [ -n "$hex" ] || fail "no NAA in $1: $(cat "$1")"
    echo -n "$hex" | sed 's/\(..\)/\\x\1/g'
}

check_tape_xcopy() {
    # A backup the target makes itself: a tar archive on a disk LUN, copied to the
    # tape by EXTENDED COPY (00h segments in tar's 10240-byte records, then a 10h
    # filemark), sent through sg_raw; then st and tar read what the copy wrote.
    login "$T_TAPE" "$PORTAL_A"
    for _ in $(seq 50); do [ -e /dev/nst0 ] && break; sleep 0.2; done
    local d tsg size blocks
    d=$(disk "$T_HOST" 1)
    tsg="/dev/$(ls /sys/class/scsi_tape/st0/device/scsi_generic)"
    tar -cf /tmp/backup.tar -C /usr/bin .
    size=$(stat -c %s /tmp/backup.tar)
    [ $((size % 10240)) -eq 0 ] || fail "tar size $size is not whole records"
    blocks=$((size / 512))
    [ "$blocks" -le $((256 * 2048)) ] || fail "archive larger than the disk LUN"
    dd if=/tmp/backup.tar of="$d" bs=1M oflag=direct conv=fsync status=none
    # The list: header (list ID usage 11b), a disk and a tape CSCD (PAD), 00h
    # segments of at most 65535 blocks carrying their residue (CAT) to the next,
    # the last without, then one filemark.
    local segs="" nseg=0 lba=0 n cat
    while [ "$lba" -lt "$blocks" ]; do
        n=$((blocks - lba))
        [ "$n" -gt 65535 ] && n=65535
        cat=0
        [ $((lba + n)) -lt "$blocks" ] && cat=1
        segs+="\\x00$(hexbytes 1 $cat)\\x00\\x14$(hexbytes 2 0)$(hexbytes 2 1)\\x00$(hexbytes 3 10240)\\x00\\x00$(hexbytes 2 $n)$(hexbytes 8 $lba)"
        nseg=$((nseg + 1))
        lba=$((lba + n))
    done
    segs+="\\x10\\x00\\x00\\x08\\x00\\x00$(hexbytes 2 1)\\x00$(hexbytes 3 1)"
    local seglen=$((nseg * 24 + 12))
    local cscd_disk cscd_tape
    cscd_disk="\\xe4\\x00\\x00\\x00\\x01\\x03\\x00\\x10$(naa_of "/sys/block/$(basename "$d")/device/wwid")$(hexbytes 4 0)$(hexbytes 4 512)"
    cscd_tape="\\xe4\\x01\\x00\\x00\\x01\\x03\\x00\\x10$(naa_of /sys/class/scsi_tape/st0/device/wwid)$(hexbytes 4 0)\\x04\\x00\\x00\\x00"
    printf '%b' "\\x00\\x18$(hexbytes 2 64)$(hexbytes 4 0)$(hexbytes 4 $seglen)$(hexbytes 4 0)$cscd_disk$cscd_tape$segs" >/tmp/xcopy.bin
    local len
    len=$(stat -c %s /tmp/xcopy.bin)
    expect "parameter list length" "$len" $((16 + 64 + seglen))
    mt -f /dev/nst0 rewind
    # shellcheck disable=SC2086
    sg_raw -s "$len" -i /tmp/xcopy.bin -t 300 "$tsg" 83 00 00 00 00 00 00 00 00 00 \
        $(printf '%02x %02x %02x %02x' $((len >> 24)) $(((len >> 16) & 255)) $(((len >> 8) & 255)) $((len & 255))) 00 00 \
        || fail "EXTENDED COPY to the tape failed"
    # st's counters are stale after a copy moved the tape: rewind, then read.
    mt -f /dev/nst0 rewind
    tar -tvf /dev/nst0 >/tmp/xlist
    expect "entries in the copied archive" "$(wc -l </tmp/xlist)" "$(tar -tf /tmp/backup.tar | wc -l)"
    mt -f /dev/nst0 rewind
    mkdir -p /tmp/xrestore
    tar -xf /dev/nst0 -C /tmp/xrestore
    diff -r --no-dereference /usr/bin /tmp/xrestore || fail "the copied archive differs"
    # Exactly one file was written: the filemark follows the archive.
    mt -f /dev/nst0 eod
    expect "files on the tape" "$(mt_field 'File number')" 1
    echo "ok: $size bytes backed up by EXTENDED COPY ($nseg segments), read back by st and tar"
    logout "$T_TAPE" "$PORTAL_A"
}

check_btape() {
    # Bacula's own drive test: btape writes labelled records and end-of-file marks,
    # rewinds and re-reads them, repositions to file:block and compares, and
    # appends files (the published runs' "test" sequence).
    login "$T_TAPE" "$PORTAL_A"
    for _ in $(seq 50); do [ -e /dev/nst0 ] && break; sleep 0.2; done
    mt -f /dev/nst0 rewind
    mkdir -p /tmp/bacula
    cat >/tmp/bacula/bacula-sd.conf <<'SD'
Storage {
  Name = oxtgt-sd
  WorkingDirectory = /tmp/bacula
  Pid Directory = /tmp/bacula
}
Director {
  Name = oxtgt-dir
  Password = "guest-only"
}
Device {
  Name = Drive-0
  Media Type = LTO
  Archive Device = /dev/nst0
  AutomaticMount = yes
  AlwaysOpen = yes
  RemovableMedia = yes
  RandomAccess = no
  # 16 KiB blocks instead of 64 KiB: btape's 20000 records then take a quarter of
  # the emulated guest's time, the same commands.
  Maximum Block Size = 16384
}
Messages {
  Name = Standard
  console = all
}
SD
    local btape
    btape=$(command -v btape || echo /usr/sbin/btape)
    printf 'test\nquit\n' | timeout 480 "$btape" -c /tmp/bacula/bacula-sd.conf Drive-0 >/tmp/btape.out 2>&1 || true
    cat /tmp/btape.out
    ! grep -qiE "test failed|ERR=|is not correct|NOT correct" /tmp/btape.out || fail "btape reported a failure"
    grep -qi "End Forward space files test" /tmp/btape.out || fail "btape did not finish its test"
    # The append test's scan of the tape must equal btape's sample output (whose
    # byte counts are for its default 64 KiB blocks: files and blocks compared).
    local sizes='s/ of [0-9]* bytes//; s/, bytes = .*//'
    sed -n '/Doing Bacula scan of blocks:/,/^Total files/p' /tmp/btape.out | sed 1d | sed "$sizes" >/tmp/scan
    sed -n '/=== Sample correct output ===/,/=== End sample/p' /tmp/btape.out | sed '1d;$d' | sed "$sizes" >/tmp/sample
    [ -s /tmp/scan ] && diff /tmp/scan /tmp/sample || fail "the append scan differs from btape's sample"
    echo "ok: btape test: $(grep -ci 'test succeeded' /tmp/btape.out) tests succeeded, $(grep -c 'This is correct' /tmp/btape.out) positions correct, append scan as the sample"
    logout "$T_TAPE" "$PORTAL_A"
}

check_kernel_log() {
    dmesg >/tmp/dmesg
    # The multipath check's cut path fails its I/O on purpose; dm-multipath resends
    # it on the other path (that check verified every block).
    local name hctl
    read -r name hctl <"$OUT/multipath-members" 2>/dev/null || true
    if [ -n "${name:-}" ]; then
        grep -vE "dev $name\b|\[$name\]|sd $hctl:" /tmp/dmesg >/tmp/dmesg.rest || true
        echo "left out: $(($(wc -l </tmp/dmesg) - $(wc -l </tmp/dmesg.rest))) lines about the cut multipath path ($name, $hctl)"
        mv /tmp/dmesg.rest /tmp/dmesg
    fi
    tail -50 /tmp/dmesg
    ! grep -E "I/O error|critical (target|medium)|Medium Error|Hardware Error|BUG|WARNING|Call Trace" /tmp/dmesg || fail "errors in the kernel log"
}
