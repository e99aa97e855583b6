#!/usr/bin/env bash
# bench/install-peers.sh: install the peer tools of the benchmark from Debian's packages.
#
#   rclone   rclone mount (--vfs-cache-mode off and full), also writes the shared data set
#   s3fs     s3fs-fuse
#   fio      random 4 KiB reads
#   fuse3    fusermount3 (unmounting the peers)
#
# Idempotent: packages already installed are skipped, and `apt-get update` runs only when
# something is missing.  The servers (Swift, memcached) and the Python side (moto,
# fake-gcs-server) come from scripts/install-test-servers.sh and the project's venv.
set -euo pipefail

PKGS=(rclone s3fs fio fuse3)

die() { echo "install-peers.sh: ERROR: $*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "must run as root (apt-get install)"
command -v apt-get >/dev/null || die "apt-get not found: this script is for Debian/Ubuntu"

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "install-peers.sh: ${PKGS[*]} already installed"
  exit 0
fi
echo "install-peers.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq || die "apt-get update failed"
apt-get install -y -qq --no-install-recommends "${missing[@]}" || die "apt-get install ${missing[*]} failed"
for p in rclone s3fs fio fusermount3; do
  command -v "$p" >/dev/null || die "$p still missing after the install"
done
echo "install-peers.sh: done"
