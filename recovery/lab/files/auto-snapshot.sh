#!/bin/sh
# Periodic snapshot of the protected datasets, as an auto-snapshot cron job
# takes it: one atomic snapshot auto-N of all of them, N one more than the
# highest auto-N anywhere in the pool (restores move snapshots between
# datasets, so the pool, not one dataset, decides). Prints the new name.
#
# Usage: auto-snapshot DATASET...
set -eu

exec 9>/run/auto-snapshot.lock
flock 9
last=$(zfs list -H -t snapshot -o name -r tank |
    sed -n 's/.*@auto-\([0-9][0-9]*\)$/\1/p' | sort -n | tail -n 1)
name="auto-$((${last:-0} + 1))"
for dataset in "$@"; do
    shift
    set -- "$@" "$dataset@$name"
done
zfs snapshot "$@"
echo "$name"
