#!/bin/sh
# Make the lab's root pool: copy the running system (the lab base image,
# booted in a builder guest that has the zfs module) into boot environment
# rpool/ROOT/debian on the blank disk with virtio serial RPOOL0, and point the
# pool's bootfs at it. recovery/lab/rootpool.py runs this over SSH and caches
# the disk; every lab host boots from a copy of it.
#
# A recovery switches boot environments by cloning a snapshot under
# rpool/ROOT and setting bootfs; the initramfs follows bootfs.
set -eu

DISK=/dev/disk/by-id/virtio-RPOOL0
BE=rpool/ROOT/debian

log() {
    echo "rootpool: $*"
}

modprobe zfs
udevadm settle
if [ ! -b "$DISK" ]; then
    echo "rootpool: no blank disk at $DISK" >&2
    exit 1
fi

log "creating rpool on $DISK"
# acltype/xattr: cp -a of the journal's ACLs fails without them.
zpool create -f -o ashift=12 -O mountpoint=none -O compression=lz4 \
    -O acltype=posixacl -O xattr=sa -R /mnt rpool "$DISK"
zfs create -o canmount=off -o mountpoint=none rpool/ROOT
zfs create -o canmount=noauto -o mountpoint=/ "$BE"
zfs mount "$BE"
zpool set bootfs="$BE" rpool

log "copying the root file system into $BE"
cp -ax /. /mnt/

# The initramfs mounts the root dataset; the ext4 root line would fail the boot.
sed -i '\|[[:space:]]/[[:space:]]|d' /mnt/etc/fstab
# The builder's identity is not the hosts': each host gets its own from
# fw_cfg at boot. Its journal is not theirs either.
echo lab >/mnt/etc/hostname
sed -i '/^127\.0\.1\.1[[:space:]]/d' /mnt/etc/hosts
rm -f /mnt/etc/ssh/ssh_host_*
rm -rf /mnt/var/log/journal/*
# Pool tank is created later, after the first boot (files/pool.sh): the cache
# file then imports it; without one (a boot environment cloned from a
# snapshot older than the pool) a scan does.
rm -f /mnt/etc/zfs/zpool.cache
systemctl --root=/mnt enable zfs-import-scan.service

log "exporting rpool (bootfs $(zpool get -H -o value bootfs rpool))"
zpool export rpool
log "done"
