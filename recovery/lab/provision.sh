#!/bin/sh
# Provision one lab web host: real OpenZFS, Apache with the vulnerable CGI
# configuration of the 2005/2009 incidents, SSH for the operator.
#
# One source of truth: run as root inside the debootstrap chroot of the QEMU
# lab (recovery/lab/image.py) and by the Vagrantfile on a fresh Debian
# bookworm box.
#
# Usage: provision.sh [--bare-image]
#   --bare-image  the system is a bare debootstrap root (no network setup, no
#                 kernel yet): also set up systemd-networkd for the QEMU NIC.
#
# Environment (files, so no secret appears on a command line or in this script):
#   RECOVERY_ROOT_PASSWORD_FILE  root's password (sulogin refuses a locked root)
#   RECOVERY_AUTHORIZED_KEYS     the operator's public key(s) for root
set -eu

BARE_IMAGE=no
if [ "${1:-}" = "--bare-image" ]; then
    BARE_IMAGE=yes
fi

: "${RECOVERY_ROOT_PASSWORD_FILE:?path of the file holding the root password}"
: "${RECOVERY_AUTHORIZED_KEYS:?path of the operator public key file}"

export DEBIAN_FRONTEND=noninteractive

# Web root and CGI directory; the lab later moves them onto ZFS datasets.
WWW=/srv/www

log() {
    echo "provision: $*"
}

apt_install() {
    apt-get install -y --no-install-recommends -o Dpkg::Options::=--force-confold "$@"
}

# zfs-dkms, zfsutils-linux and python3-pyzfs live in contrib.
add_contrib() {
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        sed -i '/^Components:/{/contrib/!s/$/ contrib/}' "$f"
    done
    if [ -f /etc/apt/sources.list ]; then
        sed -i -E '/^deb(-src)?[[:space:]]/{/[[:space:]]contrib([[:space:]]|$)/!s/$/ contrib/}' \
            /etc/apt/sources.list
    fi
}

install_kernel_and_zfs() {
    log "installing kernel and headers"
    apt_install linux-image-amd64 linux-headers-amd64
    log "building zfs-dkms for the installed kernel"
    apt_install zfs-dkms zfsutils-linux python3-pyzfs
    ensure_hostid
    # Root on ZFS: the initramfs must import the root pool. zfs-initramfs
    # needs zfs-dkms or zfs-modules to configure, so it goes in while
    # zfs-dkms is still there (a later dpkg -i leaves it unconfigured).
    log "installing zfs-initramfs"
    apt_install zfs-initramfs busybox
}

# One hostid for the initrd and every system cut from this image (the hosts'
# boot environments and the rescue system), so each may import the pools the
# others last used without forcing.
ensure_hostid() {
    if [ ! -s /etc/hostid ]; then
        zgenhostid
    fi
}

# The zfs modules are kept, the compiler and headers go: purging zfs-dkms
# would delete the modules it built, so they are first packed into a local
# package that provides zfs-modules (zfs-initramfs depends on it); dpkg's
# view of the system stays consistent and the purge keeps zfs-initramfs.
keep_zfs_modules_purge_build_tools() {
    kver=$(newest_kernel)
    built=$(find "/lib/modules/$kver" -name 'zfs.ko*' | head -n 1)
    if [ -z "$built" ]; then
        echo "provision: zfs module was not built for kernel $kver" >&2
        exit 1
    fi
    log "zfs module built for $kver; packing it and purging build tools"
    install_zfs_modules_package "$kver" "$(dirname "$built")"
    apt-mark manual zfsutils-linux python3-pyzfs zfs-initramfs busybox >/dev/null
    apt-get purge -y --auto-remove zfs-dkms dkms linux-headers-amd64 "linux-headers-*"
    depmod "$kver"
    modinfo -k "$kver" zfs >/dev/null
    dpkg -s zfsutils-linux python3-pyzfs zfs-initramfs >/dev/null
}

newest_kernel() {
    find /lib/modules -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n 1
}

install_zfs_modules_package() {
    pkg=$(mktemp -d)
    mkdir -p "$pkg/DEBIAN" "$pkg/lib/modules/$1/extra/zfs"
    cp -a "$2"/. "$pkg/lib/modules/$1/extra/zfs/"
    cat >"$pkg/DEBIAN/control" <<CONTROL
Package: zfs-modules-lab
Version: $(dpkg-query -W -f '${Version}' zfs-dkms)
Architecture: amd64
Maintainer: recovery lab <root@localhost>
Provides: zfs-modules
Description: OpenZFS modules zfs-dkms built for kernel $1 (lab image)
CONTROL
    dpkg-deb --root-owner-group --build "$pkg" "$pkg.deb" >/dev/null
    dpkg -i "$pkg.deb"
    rm -rf "$pkg" "$pkg.deb"
}

# The initrd beside the disk must import the root pool: rebuild it now that
# modules, hostid and hook are final, and fail if any of them is missing.
update_zfs_initramfs() {
    kver=$(newest_kernel)
    update-initramfs -u -k "$kver"
    contents=$(lsinitramfs "/boot/initrd.img-$kver")
    for wanted in scripts/zfs etc/hostid sbin/zpool /zfs.ko; do
        if ! echo "$contents" | grep -q "$wanted"; then
            echo "provision: $wanted missing from /boot/initrd.img-$kver" >&2
            exit 1
        fi
    done
    log "initrd has the ZFS hook ($(echo "$contents" | grep -c zfs) zfs entries)"
}

install_services() {
    log "installing services"
    apt_install openssh-server apache2 perl rsync debsums cron python3 \
        iproute2 iputils-ping procps dbus
}

set_root_credentials() {
    printf 'root:%s\n' "$(cat "$RECOVERY_ROOT_PASSWORD_FILE")" | chpasswd
    install -d -m 700 /root/.ssh
    install -m 600 "$RECOVERY_AUTHORIZED_KEYS" /root/.ssh/authorized_keys
}

configure_sshd() {
    cat >/etc/ssh/sshd_config.d/recovery-lab.conf <<'EOF'
# Keys only; the lab pins each guest's ed25519 host key.
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
EOF
    # Every guest gets its own host key at boot (recovery-lab-identity).
    rm -f /etc/ssh/ssh_host_*
}

# The vulnerable configuration of the seeds: a CGI directory in the web root
# tree and a stats CGI in the spirit of awstats 6.x (CVE-2005-0116): the
# configdir parameter reaches a two-argument open(), so a value starting with
# "|" runs a shell command, e.g. /cgi-bin/awstats.pl?configdir=|id;%23
# Lab only.
configure_apache() {
    install -d "$WWW/htdocs" "$WWW/cgi-bin"
    cat >"$WWW/htdocs/index.html" <<'EOF'
<!DOCTYPE html>
<html><head><title>Lab web host</title></head>
<body><h1>Lab web host</h1><p><a href="/cgi-bin/awstats.pl">Statistics</a></p></body>
</html>
EOF
    cat >"$WWW/cgi-bin/awstats.pl" <<'EOF'
#!/usr/bin/perl
# Web statistics (lab replica of a 2005 awstats flaw; deliberately vulnerable).
use strict;
use warnings;

$| = 1;
my %param;
for my $pair (split /&/, $ENV{QUERY_STRING} // '') {
    my ($name, $value) = split /=/, $pair, 2;
    next unless defined $name;
    $value = '' unless defined $value;
    $value =~ tr/+/ /;
    $value =~ s/%([0-9A-Fa-f]{2})/chr(hex($1))/ge;
    $param{$name} = $value;
}
my $config = $param{config} // 'www';
my $configdir = $param{configdir} // '/etc/awstats';

print "Content-Type: text/plain\r\n\r\n";
print "AWStats 6.2 for $config\n";
if (open(CONFIG, "$configdir/awstats.$config.conf")) {
    print while <CONFIG>;
    close(CONFIG);
} else {
    print "No statistics yet.\n";
}
EOF
    chmod 755 "$WWW/cgi-bin/awstats.pl"
    cat >/etc/apache2/sites-available/lab.conf <<EOF
<VirtualHost *:80>
    DocumentRoot $WWW/htdocs
    ScriptAlias /cgi-bin/ $WWW/cgi-bin/
    <Directory $WWW/htdocs>
        Options Indexes FollowSymLinks
        AllowOverride All
        Require all granted
    </Directory>
    <Directory $WWW/cgi-bin>
        Options +ExecCGI
        AllowOverride None
        Require all granted
    </Directory>
    ErrorLog \${APACHE_LOG_DIR}/error.log
    CustomLog \${APACHE_LOG_DIR}/access.log combined
</VirtualHost>
EOF
    echo "ServerName localhost" >/etc/apache2/conf-available/servername.conf
    a2enconf -q servername
    a2enmod -q cgid
    a2dissite -q 000-default
    a2ensite -q lab
}

# Hostname, lab LAN address and SSH host key come from QEMU fw_cfg, so guests
# booted from one base image differ and the commander knows each host key
# before the guest boots. Without fw_cfg (e.g. Vagrant) missing host keys are
# generated.
install_identity_unit() {
    cat >/usr/local/sbin/recovery-lab-identity <<'EOF'
#!/bin/sh
set -eu
modprobe qemu_fw_cfg 2>/dev/null || true
CFG=/sys/firmware/qemu_fw_cfg/by_name/opt/recovery
item() {
    if [ -r "$CFG/$1/raw" ]; then cat "$CFG/$1/raw"; fi
}
name=$(item hostname)
if [ -n "$name" ]; then
    echo "$name" >/etc/hostname
    hostname "$name"
    touch /etc/hosts
    sed -i "/^127\.0\.1\.1[[:space:]]/d" /etc/hosts
    echo "127.0.1.1 $name" >>/etc/hosts
fi
key=/etc/ssh/ssh_host_ed25519_key
if [ -r "$CFG/ssh_host_ed25519_key/raw" ]; then
    install -m 600 "$CFG/ssh_host_ed25519_key/raw" "$key"
    ssh-keygen -y -f "$key" >"$key.pub"
elif [ ! -s "$key" ]; then
    ssh-keygen -q -t ed25519 -N '' -f "$key"
fi
lan=$(item lan)
if [ -n "$lan" ]; then
    mkdir -p /run/systemd/network
    printf '[Match]\nMACAddress=%s\n\n[Network]\nAddress=%s\n' "${lan#* }" "${lan%% *}" \
        >/run/systemd/network/10-lab-lan.network
fi
EOF
    chmod 755 /usr/local/sbin/recovery-lab-identity
    cat >/etc/systemd/system/recovery-lab-identity.service <<'EOF'
[Unit]
Description=Lab host identity from QEMU fw_cfg (hostname, LAN address, SSH host key)
DefaultDependencies=no
After=local-fs.target
Before=sysinit.target systemd-networkd.service ssh.service network-pre.target
Wants=network-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/recovery-lab-identity

[Install]
WantedBy=sysinit.target
EOF
    systemctl enable recovery-lab-identity.service
}

# The QEMU user-network NIC gets DHCP; the lab LAN NIC is matched by MAC in
# the file the identity unit writes, which sorts first.
configure_bare_network() {
    cat >/etc/systemd/network/50-lab-dhcp.network <<'EOF'
[Match]
Name=e*

[Network]
DHCP=ipv4
EOF
    systemctl enable systemd-networkd.service
    systemctl disable systemd-networkd-wait-online.service 2>/dev/null || true
    # Nothing to fetch on an isolated LAN; under TCG these only cost CPU.
    systemctl disable apt-daily.timer apt-daily-upgrade.timer
}

main() {
    add_contrib
    apt-get update
    if [ "$BARE_IMAGE" = yes ]; then
        install_kernel_and_zfs
        keep_zfs_modules_purge_build_tools
        update_zfs_initramfs
    else
        apt_install "linux-headers-$(uname -r)"
        apt_install zfs-dkms zfsutils-linux python3-pyzfs
    fi
    install_services
    set_root_credentials
    configure_sshd
    configure_apache
    install_identity_unit
    if [ "$BARE_IMAGE" = yes ]; then
        configure_bare_network
    fi
    # The serial line has one owner: the console (kernel, sulogin, the lab BMC).
    systemctl mask serial-getty@ttyS0.service
    apt-get clean
    rm -rf /var/lib/apt/lists/*
    log "done"
}

main
