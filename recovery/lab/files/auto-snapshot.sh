#!/bin/sh
# Periodic snapshot of the protected datasets, as an auto-snapshot cron job
# takes it: one atomic snapshot auto-N per pool (the boot environment's pool,
# then the data pool), N one more than the highest auto-N anywhere (restores
# move snapshots between datasets, so the pools, not one dataset, decide).
# Prints the new name.
#
# Usage: auto-snapshot DATASET...
set -eu

exec 9>/run/auto-snapshot.lock
flock 9
last=$(zfs list -H -t snapshot -o name |
    sed -n 's/.*@auto-\([0-9][0-9]*\)$/\1/p' | sort -n | tail -n 1)
name="auto-$((${last:-0} + 1))"
for pool in $(printf '%s\n' "$@" | cut -d/ -f1 | sort -u); do
    snapshots=""
    for dataset in "$@"; do
        case $dataset in "$pool" | "$pool"/*) snapshots="$snapshots $dataset@$name" ;; esac
    done
    # shellcheck disable=SC2086  # dataset names have no spaces
    zfs snapshot $snapshots
done
echo "$name"
