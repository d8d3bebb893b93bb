#!/bin/sh
# A lab web server (eu-web, us-web) as the seeds found them: the site owner's
# account with its home on ZFS, the staging host's deployment key for root
# (restricted to rsync into the web roots from the staging host, as the 2009
# report's lesson asks), and the unpatched local root hole of the 2005 box. Repeatable: nothing on
# the protected datasets is touched once it is in place.
#
# Usage: web-host.sh WEBMASTER_PUBLIC_KEY DEPLOY_AUTHORIZED_KEYS_LINE AUTO_SNAPSHOT_CRON_LINE
set -eu
webmaster_key=$1
deploy_key=$2
snapshot_cron=$3

if ! id webmaster >/dev/null 2>&1; then
    useradd --create-home --shell /bin/bash webmaster
fi
home=/home/webmaster
if [ ! -d "$home/.ssh" ]; then
    install -d -o webmaster -g webmaster -m 700 "$home/.ssh"
    install -d -o webmaster -g webmaster -m 755 "$home/uploads"
    printf '%s\n' "$webmaster_key" >"$home/.ssh/authorized_keys"
    chown webmaster:webmaster "$home/.ssh/authorized_keys"
    chmod 600 "$home/.ssh/authorized_keys"
fi

# The deploy key's line, with its from=/command= options; an older unrestricted line of that key goes.
key_blob=$(printf '%s\n' "$deploy_key" | awk '{for (i = 1; i < NF; i++) if ($i ~ /^ssh-/) { print $(i + 1); exit }}')
[ -n "$key_blob" ] || { echo "web-host.sh: no ssh- key in the deploy key line" >&2; exit 1; }
grep -vF "$key_blob" /root/.ssh/authorized_keys >/root/.ssh/authorized_keys.new || true
printf '%s\n' "$deploy_key" >>/root/.ssh/authorized_keys.new
chmod 600 /root/.ssh/authorized_keys.new
mv /root/.ssh/authorized_keys.new /root/.ssh/authorized_keys

# Stand-in for the unpatched kernel of 2005: the web server's user can become
# root (`local-root-hole -p`). Lab only.
install -d /usr/local/libexec
install -o root -g www-data -m 4750 /bin/bash /usr/local/libexec/local-root-hole

printf '%s\n' "$snapshot_cron" >/etc/cron.d/auto-snapshot
