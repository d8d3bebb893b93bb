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
# atime=off, as on pool tank: with access times on, every file a host reads
# (each program it runs) rewrites that file's dnode, and `zfs diff` examines
# every object of a rewritten dnode block. After a golden capture and an hour
# of history that was 7 s of kernel time per diff of the boot environment,
# for four changes it reported; reading 2000 files made one diff take 17 s.
zpool create -f -o ashift=12 -O mountpoint=none -O compression=lz4 \
    -O acltype=posixacl -O xattr=sa -O atime=off -R /mnt rpool "$DISK"
zfs create -o canmount=off -o mountpoint=none rpool/ROOT
zfs create -o canmount=noauto -o mountpoint=/ "$BE"
zfs mount "$BE"
zpool set bootfs="$BE" rpool

log "copying the root file system into $BE"
cp -ax /. /mnt/

# What no lab host runs stays out of the boot environment: the compiler the zfs
# module was built with, drivers for hardware a QEMU guest does not have, and
# documentation. Every golden capture and evidence copy streams the boot
# environment through the guest's sshd, whose cipher runs emulated under TCG
# (about 8 MB/s): fewer bytes are minutes less of every rehearsal.
log "leaving the compiler, foreign drivers and documentation out of $BE"
mount -t proc proc /mnt/proc
mount --bind /dev /mnt/dev
chroot /mnt env DEBIAN_FRONTEND=noninteractive apt-get purge -y -q --auto-remove \
    gcc-12 cpp-12 binutils libc6-dev
umount /mnt/dev /mnt/proc
kver=$(find /mnt/usr/lib/modules -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n 1)
kernel=/mnt/usr/lib/modules/$kver/kernel
rm -rf "$kernel/drivers/gpu" "$kernel/drivers/media" "$kernel/drivers/infiniband" \
    "$kernel/drivers/iio" "$kernel/drivers/staging" "$kernel/drivers/isdn" "$kernel/drivers/bluetooth" \
    "$kernel/drivers/net/wireless" "$kernel/drivers/net/ethernet" "$kernel/sound" \
    "$kernel/net/wireless" "$kernel/net/mac80211" "$kernel/net/bluetooth"
chroot /mnt depmod "$kver"
find /mnt/usr/share/doc /mnt/usr/share/man /mnt/usr/share/info /mnt/usr/share/locale -mindepth 1 -delete
log "$BE: $(du -sm /mnt | cut -f1) MB on disk"

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
