#!/usr/bin/env bash
# RBD copy offload: 256 MiB between two RBD LUs (1 MiB objects) by EXTENDED COPY
# (4 MiB segments) and by ODX, beside the same copy done by the host through oxtgt,
# with the bytes the gateway's librados moved (its admin socket's messenger
# counters). Runs tests/rbd.rs's copy test ROUNDS times against a throwaway
# one-node cluster on 127.0.0.1 (scripts/ceph/cluster). Needs the Ceph packages
# scripts/test installs.
#
#   bench/rbd.sh [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
cluster=$(mktemp -d)
trap 'scripts/ceph/cluster stop "$cluster"' EXIT
scripts/ceph/cluster start "$cluster"
cargo build --release -q -p oxtgt --features rbd --tests
for r in $(seq "$rounds"); do
    echo "round $r"
    OXTGT_CEPH_CONF=$cluster/ceph.conf cargo test --release -q -p oxtgt --features rbd --test rbd \
        -- --exact rbd_copies_stay_inside_the_cluster --nocapture 2>&1 | grep '^rbd:'
done
