#!/bin/sh
# The lab staging host (people) as the 2009 seed found it: web roots the
# "webdev" group writes, an unprivileged "backup" account in that group whose
# key is authorized with no command= or from= restriction, and root's
# scheduled rsync of the web roots to the web servers. Repeatable: nothing on
# the protected datasets is touched once it is in place.
#
# Usage: staging-host.sh BACKUP_PUBLIC_KEY DEPLOY_PRIVATE_KEY_BASE64 KNOWN_HOSTS WWW_SYNC_CRON_LINE AUTO_SNAPSHOT_CRON_LINE
set -eu
backup_key=$1
deploy_key=$2
known_hosts=$3
sync_cron=$4
snapshot_cron=$5

getent group webdev >/dev/null || groupadd webdev
if [ "$(stat -c %G /srv/www/htdocs)" != webdev ]; then
    chgrp -R webdev /srv/www/htdocs /srv/www/cgi-bin
    chmod -R g+w /srv/www/htdocs /srv/www/cgi-bin
    find /srv/www/htdocs /srv/www/cgi-bin -type d -exec chmod g+s {} +
fi

# Debian's system account "backup", given a shell and a home, as backup jobs do.
usermod --home /home/backup --shell /bin/bash --append --groups webdev backup
if [ ! -d /home/backup/.ssh ]; then
    install -d -o backup -g backup -m 750 /home/backup
    install -d -o backup -g backup -m 700 /home/backup/.ssh
    printf '%s\n' "$backup_key" >/home/backup/.ssh/authorized_keys
    chown backup:backup /home/backup/.ssh/authorized_keys
    chmod 600 /home/backup/.ssh/authorized_keys
fi

umask 077
printf '%s' "$deploy_key" | base64 -d >/root/.ssh/www-sync_ed25519
printf '%s\n' "$known_hosts" >/root/.ssh/known_hosts.www-sync
printf '%s\n' "$sync_cron" >/etc/cron.d/www-sync
printf '%s\n' "$snapshot_cron" >/etc/cron.d/auto-snapshot
chmod 644 /etc/cron.d/www-sync /etc/cron.d/auto-snapshot
