#!/bin/sh
# Root's password (typed only at the console's single-user prompt) and sshd without PAM.
#
# Under PAM every SSH login registers a logind session and starts root's systemd
# user manager, which stops again when the session ends: about a second per
# connection on a TCG guest. Keys are all the lab's logins take.
#
# sshd re-executes itself on its reload and refuses connections until it listens
# again: this returns only once every listening socket of port 22 is a new one,
# so the next login of the provisioning is not refused.
#
# Usage: logins.sh ROOT_PASSWORD
set -eu
printf 'root:%s\n' "$1" | chpasswd
printf 'UsePAM no\n' >/etc/ssh/sshd_config.d/recovery-lab-logins.conf

listeners() {
    ss -Hltne 'sport = :22' | grep -o 'ino:[0-9]*' | sort
}

before=$(mktemp)
listeners >"$before"
systemctl reload ssh
tries=0
while [ "$tries" -lt 150 ]; do
    now=$(listeners)
    if [ -n "$now" ] && [ "$(printf '%s\n' "$now" | wc -l)" -eq "$(wc -l <"$before")" ] &&
        ! printf '%s\n' "$now" | grep -qxFf "$before"; then
        rm -f "$before"
        exit 0
    fi
    tries=$((tries + 1))
    sleep 0.2
done
rm -f "$before"
echo "logins.sh: sshd did not listen again within 30 s of its reload" >&2
exit 1
