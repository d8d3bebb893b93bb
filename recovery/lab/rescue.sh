#!/bin/sh
# Turn a copy of the provisioned lab root into the known-good rescue system
# the lab BMC boots from read-only media (recovery/lab/image.py runs this in
# the chroot after the base disk is packed, and packs the result as
# rescue.qcow2).
#
# The rescue system trusts nothing on the host's disks: it imports and mounts
# no pool by itself, runs no network service, takes no identity from the
# machine (hostname, host key), and gives root a shell on the serial console
# without a password, so no credential is ever typed into a possibly
# compromised system.
#
# Environment:
#   RECOVERY_RESCUE_KEY  the image recipe key, written to /etc/recovery-rescue
#   RECOVERY_RESCUE_ROOT the root device the rescue's fstab names
set -eu

: "${RECOVERY_RESCUE_KEY:?recipe key of the image}"
: "${RECOVERY_RESCUE_ROOT:?root device of the rescue system}"

log() {
    echo "rescue: $*"
}

set_identity() {
    echo rescue >/etc/hostname
    printf '127.0.0.1 localhost\n127.0.1.1 rescue\n::1 localhost ip6-localhost ip6-loopback\n' >/etc/hosts
    printf 'recovery lab rescue image %s\n' "$RECOVERY_RESCUE_KEY" >/etc/recovery-rescue
    echo "$RECOVERY_RESCUE_ROOT / ext4 defaults,errors=remount-ro 0 1" >/etc/fstab
}

# Pools are imported by hand, with an altroot and no mounts: nothing of the
# host runs and no dataset lands on the rescue's own tree.
keep_pools_untouched() {
    systemctl mask zfs-import-cache.service zfs-import-scan.service zfs-import.target \
        zfs-mount.service zfs-zed.service zfs-share.service zfs-volumes.target \
        zfs-volume-wait.service
    rm -f /etc/zfs/zpool.cache
}

# The machine's identity (hostname, SSH host key, LAN address) is the host's,
# not the rescue system's: its unit goes.
no_network_services() {
    systemctl mask ssh.service ssh.socket apache2.service cron.service \
        systemd-networkd.service systemd-networkd.socket
    systemctl disable recovery-lab-identity.service
    rm -f /etc/systemd/system/recovery-lab-identity.service /usr/local/sbin/recovery-lab-identity
}

# The provisioned image masks the serial getty (the console belongs to the
# kernel and sulogin there); the rescue system hands it to root directly.
serial_root_login() {
    systemctl unmask serial-getty@ttyS0.service
    mkdir -p /etc/systemd/system/serial-getty@ttyS0.service.d
    cat >/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf <<'EOF'
[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin root --keep-baud 115200,57600,38400,9600 - $TERM
EOF
}

main() {
    set_identity
    keep_pools_untouched
    no_network_services
    serial_root_login
    log "done"
}

main
