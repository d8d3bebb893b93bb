#!/bin/sh
# The scheduled deployment on the staging host: push the staged web roots to
# the web servers over the lab LAN. Whatever lands in the staging web roots
# goes live at the next run -- the path the 2009 intruders' CGI scripts took.
#
# No --delete (files only on a web server stay) and no owners or modes but
# the execute bits (the web servers own their files).
#
# Usage: www-sync ADDRESS...
set -eu

exec 9>/run/www-sync.lock
flock 9
remote_shell="ssh -i /root/.ssh/www-sync_ed25519 -o IdentitiesOnly=yes -o BatchMode=yes \
 -o StrictHostKeyChecking=yes -o UserKnownHostsFile=/root/.ssh/known_hosts.www-sync -o ConnectTimeout=10"
for address in "$@"; do
    for root in htdocs cgi-bin; do
        rsync -rlt --executability -e "$remote_shell" "/srv/www/$root/" "root@$address:/srv/www/$root/"
    done
done
