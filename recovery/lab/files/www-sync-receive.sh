#!/bin/sh
# command= of the staging host's deploy key on a web server: an rsync receiver
# into one of the two web roots, and nothing else (no shell, no other path).
set -eu
set -f
command=${SSH_ORIGINAL_COMMAND:-}
options=${command#rsync --server }
options=${options%% *}
case "$options" in
    -*) ;;
    *) echo "www-sync-receive: refused" >&2; exit 1 ;;
esac
case "$options" in
    *[!A-Za-z0-9.=-]*) echo "www-sync-receive: refused" >&2; exit 1 ;;
esac
for root in /srv/www/htdocs/ /srv/www/cgi-bin/; do
    if [ "$command" = "rsync --server $options . $root" ]; then
        exec rsync --server "$options" . "$root"
    fi
done
echo "www-sync-receive: refused" >&2
exit 1
