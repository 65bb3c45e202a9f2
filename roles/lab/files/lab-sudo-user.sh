#!/bin/sh
# Give one lab host its non-root login user, as a real fleet's VMs have one.
# Run as root through `docker exec` by roles/lab/tasks/present.yml:
#
#   sh -c "$(cat lab-sudo-user.sh)" lab-sudo-user USER PUBLIC_KEY
#
# USER gets a home directory, PUBLIC_KEY as its only authorized key and
# passwordless sudo from /etc/sudoers.d/vmfleet-lab, which `visudo -cf` checks
# before it is put in place. The script prints one "changed: ..." line for each
# thing it changed and nothing else, so a second run prints nothing.
set -eu
user=$1
key=$2
changed() { printf 'changed: %s\n' "$*"; }
owner_mode() { stat -c '%U:%G:%a' "$1" 2>/dev/null || true; }

if ! getent passwd "$user" >/dev/null; then
    # '*' rather than useradd's locked '!': no password login, but not a locked account.
    useradd --create-home --user-group --shell /bin/bash --password '*' "$user"
    changed "created user $user"
fi
uid=$(id -u "$user")
if [ "$uid" -lt 1000 ]; then
    echo "lab-sudo-user: $user already exists as a system account (uid $uid); choose another lab_sudo_user" >&2
    exit 1
fi
group=$(id -gn "$user")
home=$(getent passwd "$user" | cut -d: -f6)

if [ ! -d "$home" ]; then
    install -d -o "$user" -g "$group" -m 0755 "$home"
    changed "made $home"
fi
if [ "$(owner_mode "$home/.ssh")" != "$user:$group:700" ]; then
    install -d -o "$user" -g "$group" -m 0700 "$home/.ssh"
    changed "made $home/.ssh"
fi
keys=$home/.ssh/authorized_keys
if [ "$(cat "$keys" 2>/dev/null || true)" != "$key" ] || [ "$(owner_mode "$keys")" != "$user:$group:600" ]; then
    tmp=$(mktemp "$keys.XXXXXX")
    printf '%s\n' "$key" >"$tmp"
    chown "$user:$group" "$tmp"
    chmod 0600 "$tmp"
    mv -f "$tmp" "$keys"
    changed "authorized the lab key for $user"
fi

sudoers=/etc/sudoers.d/vmfleet-lab
rule="# Written by the vmfleet lab role: the lab's login user has passwordless sudo.
$user ALL=(ALL:ALL) NOPASSWD: ALL"
if [ "$(cat "$sudoers" 2>/dev/null || true)" != "$rule" ] || [ "$(owner_mode "$sudoers")" != "root:root:440" ]; then
    # sudo skips files in sudoers.d whose name holds a dot, so the draft is never read.
    tmp=$(mktemp /etc/sudoers.d/.vmfleet-lab.XXXXXX)
    printf '%s\n' "$rule" >"$tmp"
    chmod 0440 "$tmp"
    if ! visudo -cf "$tmp" >&2; then
        rm -f "$tmp"
        echo "lab-sudo-user: the sudoers rule for $user does not pass visudo -cf" >&2
        exit 1
    fi
    mv -f "$tmp" "$sudoers"
    changed "gave $user passwordless sudo ($sudoers)"
fi
