#!/bin/sh
# Pool "tank" on the guest's data disk and the datasets the playbooks protect.
#
# Each new dataset is seeded with what the image holds at its mountpoint and
# then mounted over it, so the host's content moves onto ZFS unchanged and
# the image's copy stays underneath as a fallback for a boot without the pool.
# Existing datasets are left alone, so running this again changes nothing.
#
# Usage: [POOL_DEVICE=/dev/sdb] pool.sh DATASET=MOUNTPOINT...
#   default device: the lab disk with virtio serial TANK0 (recovery/lab/vm.py)
set -eu

modprobe zfs
if ! zpool list tank >/dev/null 2>&1; then
    # atime=off: reads must not show up as changes in `zfs diff`.
    zpool import -f tank 2>/dev/null ||
        zpool create -f -O mountpoint=none -O atime=off tank "${POOL_DEVICE:-/dev/disk/by-id/virtio-TANK0}"
fi
zfs mount -a

seed=/run/lab-seed
for pair in "$@"; do
    dataset=${pair%%=*}
    mountpoint=${pair#*=}
    if zfs list -H -o name "$dataset" >/dev/null 2>&1; then
        continue
    fi
    mkdir -p "$mountpoint" "$seed"
    zfs create -p -o mountpoint="$seed" "$dataset"
    cp -a "$mountpoint/." "$seed/"
    zfs set mountpoint="$mountpoint" "$dataset"
done
