#!/usr/bin/env bash
# scripts/install-mount-helper.sh [--test] [--uninstall] [HELPER]
#
# Installs storefs' mount helper where mount(8) and systemd look for it, as root, idempotently:
#   /sbin/mount.storefs, /sbin/mount.fuse.storefs      mount -t storefs / fuse.storefs, fstab
#   /sbin/umount.storefs, /sbin/umount.fuse.storefs    umount(8): uploads pending writes first
#   /usr/local/bin/storefs                             the command the systemd units run
# (on Debian's merged /usr, /sbin is /usr/sbin).  Each is a symlink to HELPER, by default
# the mount.storefs of this checkout's .venv, else the one on PATH (pip/pipx install);
# /usr/local/bin/storefs points to the storefs beside it and is left alone when it is a
# real file (another installation).  fuse3 is installed when missing.
#   --test       also what tests/service needs: systemd (systemd-analyze), ruby, vagrant,
#                procps, util-linux, passwd (useradd)
#   --uninstall  remove the links (only those pointing to a storefs helper)
# Exits non-zero with a one-line reason when a step fails.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
die() { echo "install-mount-helper.sh: ERROR: $*" >&2; exit 1; }
say() { echo "install-mount-helper.sh: $*"; }

TEST=0 UNINSTALL=0 helper=""
for arg in "$@"; do
  case "$arg" in
    --test) TEST=1 ;;
    --uninstall) UNINSTALL=1 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    -*) die "unknown argument '$arg' (usage: $0 [--test] [--uninstall] [HELPER])" ;;
    *) helper=$arg ;;
  esac
done
[[ $(id -u) == 0 ]] || die "must run as root (it writes /sbin and /usr/local/bin)"

LINKS=(/sbin/mount.storefs /sbin/mount.fuse.storefs /sbin/umount.storefs /sbin/umount.fuse.storefs)
if ((UNINSTALL)); then
  for l in "${LINKS[@]}" /usr/local/bin/storefs; do
    if [[ -L $l && $(readlink "$l") == *storefs ]]; then rm -f "$l" && say "removed $l"; fi
  done
  exit 0
fi

packages=(fuse3)
((TEST)) && packages+=(systemd ruby vagrant procps util-linux passwd)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if ((${#missing[@]})); then
  command -v apt-get >/dev/null || die "apt-get not found: install ${missing[*]} by hand"
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
    apt-get update -q >/dev/null || die "apt-get update failed (no access to the mirror?)"
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null \
      || die "apt-get install ${missing[*]} failed"
  }
fi

if [[ -z $helper ]]; then
  if [[ -x $here/.venv/bin/mount.storefs ]]; then
    helper=$here/.venv/bin/mount.storefs
  else
    helper=$(command -v mount.storefs) || die "mount.storefs not found: install storefs first (bash scripts/setup.sh, or pip install storefs), or name it"
  fi
fi
[[ -x $helper ]] || die "$helper is not an executable file"
helper=$(readlink -f "$helper")
for l in "${LINKS[@]}"; do
  if [[ $(readlink "$l" 2>/dev/null) != "$helper" ]]; then
    ln -sfn "$helper" "$l" || die "cannot write $l"
    say "$l -> $helper"
  fi
done
cli=$(dirname "$helper")/storefs
[[ -x $cli ]] || die "$cli not found beside $helper"
if [[ -e /usr/local/bin/storefs && ! -L /usr/local/bin/storefs ]]; then
  say "/usr/local/bin/storefs is another installation; left as it is"
elif [[ $(readlink /usr/local/bin/storefs 2>/dev/null) != "$cli" ]]; then
  ln -sfn "$cli" /usr/local/bin/storefs || die "cannot write /usr/local/bin/storefs"
  say "/usr/local/bin/storefs -> $cli"
fi
out=$(/sbin/mount.storefs 2>&1 || true)
[[ $out == "mount.storefs: usage"* ]] || die "/sbin/mount.storefs does not run: $out"
say "OK"
