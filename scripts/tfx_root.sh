#!/usr/bin/env bash
# Runs the TFX tier (tests/tfx_tests) where TFX 1.21 can import.
#
# TFX 1.21 does not import on Debian 12 (ml-metadata needs GCC 13's libstdc++, TFDV glibc 2.38).
# On a host with glibc >= 2.39 (Debian 13, Ubuntu 24.04) this script uses a native venv; on older
# hosts it builds a Debian 13 (trixie) root once with debootstrap, caches it outside the repo, and
# runs everything inside it with chroot (/proc, /sys and /dev mounted, resolv.conf and the host's
# extra CA certificates copied, every mount undone on exit).
#
# Usage: scripts/tfx_root.sh [--skip-if-unsupported] COMMAND [ARGS...]
#   build            build (once) and refresh the environment; nothing else
#   test [ARGS]      run `pytest tests/tfx_tests ARGS` in it (the default command)
#   run CMD [ARGS]   run a command in it, in the project folder (e.g. run python -m
#                    pipelines.local_runner --output-dir /tmp/tfx-demo)
#   shell            an interactive shell in it
#   clean            delete the cached root / venv
#   --skip-if-unsupported: exit 0 with the reason when this host cannot run the tier at all
#                    (no root for the chroot); every other failure still fails.
#
# Environment:
#   FASHION_KERAS_TFX_ROOT    the Debian 13 root (default ~/.cache/fashion_keras/tfx-root)
#   FASHION_KERAS_TFX_VENV    the native venv (default ~/.cache/fashion_keras/tfx-venv)
#   FASHION_KERAS_TFX_MODE    auto (default: native when glibc >= 2.39), chroot or native
#   FASHION_KERAS_TFX_MIRROR  Debian mirror (default http://deb.debian.org/debian)
#   PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, HTTP(S)_PROXY, NO_PROXY are passed into the root.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_BASE="${XDG_CACHE_HOME:-$HOME/.cache}/fashion_keras"
ROOT="${FASHION_KERAS_TFX_ROOT:-$CACHE_BASE/tfx-root}"
NATIVE_VENV="${FASHION_KERAS_TFX_VENV:-$CACHE_BASE/tfx-venv}"
MODE="${FASHION_KERAS_TFX_MODE:-auto}"
MIRROR="${FASHION_KERAS_TFX_MIRROR:-http://deb.debian.org/debian}"
SUITE=trixie
PYPI_URL="${PIP_INDEX_URL:-https://pypi.org/simple}"
# Bump to force a rebuild of cached roots when the recipe below changes.
RECIPE_VERSION=1
BASE_PACKAGES="python3,python3-venv,python3-pip,ca-certificates,g++,python3-dev"
# Pinned in one resolve with the project (setup.py's tfx extra pins tfx too).
PIP_PINS=("tensorflow==2.21.*" "tfx==1.21.*" "pytest")
VENV_IN_ROOT=/opt/tfx-venv
SRC_IN_ROOT=/src
SKIP_IF_UNSUPPORTED=0

log() { printf '[tfx_root] %s\n' "$*" >&2; }
die() {
  printf '[tfx_root] ERROR: %s\n' "$*" >&2
  exit 1
}
unsupported() {
  if [[ $SKIP_IF_UNSUPPORTED == 1 ]]; then
    printf '[tfx_root] SKIPPED the TFX tier: %s\n' "$*" >&2
    exit 0
  fi
  die "$*"
}

# Runs a build step with its output in a log file; on failure prints the reason and the log tail.
step() {
  local what="$1" logfile="$2"
  shift 2
  log "$what (log: $logfile)"
  if ! "$@" >"$logfile" 2>&1; then
    printf '[tfx_root] ERROR: %s failed; last lines of %s:\n' "$what" "$logfile" >&2
    tail -n 25 "$logfile" | sed 's/^/    /' >&2
    explain_failure "$logfile"
    exit 1
  fi
}

explain_failure() {
  local logfile="$1"
  if grep -qiE 'ResolutionImpossible|conflicting dependencies' "$logfile"; then
    log "reason: pip found no versions that satisfy tensorflow 2.21, tfx 1.21 and setup.py" \
      "together (see 'The conflict is caused by' above); fix the pins in setup.py"
  elif grep -qiE 'temporary failure in name resolution|could not resolve|name or service not known|network is unreachable|connection (refused|timed out)|max retries exceeded|failed to establish a new connection' "$logfile"; then
    log "reason: the package registry or Debian mirror is not reachable from here (network," \
      "DNS or proxy); check $PYPI_URL and $MIRROR, or set PIP_INDEX_URL / FASHION_KERAS_TFX_MIRROR"
  elif grep -qiE 'no space left on device' "$logfile"; then
    log "reason: disk full; the root needs about 6 GB (set FASHION_KERAS_TFX_ROOT elsewhere)"
  elif grep -qiE 'certificate verify failed|ssl' "$logfile"; then
    log "reason: TLS verification failed; put the proxy's CA in /usr/local/share/ca-certificates"
  fi
}

glibc_version() { getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}'; }

glibc_at_least() { # glibc_at_least 2.39
  local have
  have="$(glibc_version)"
  [[ -n $have ]] && [[ "$(printf '%s\n%s\n' "$1" "$have" | sort -V | head -n1)" == "$1" ]]
}

check_reachable() { # check_reachable URL WHAT
  if command -v curl >/dev/null 2>&1; then
    curl -fsS -o /dev/null --max-time 30 "$1" 2>/dev/null && return 0
  elif command -v python3 >/dev/null 2>&1; then
    python3 - "$1" <<'EOF' && return 0
import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=30).read(1)
EOF
  else
    return 0 # nothing to probe with; the build itself will say
  fi
  die "no network to $2 ($1): the build downloads Debian packages and about 4 GB of wheels." \
    "Check the connection or proxy, or set PIP_INDEX_URL / FASHION_KERAS_TFX_MIRROR."
}

# ---------------------------------------------------------------------------------------------
# chroot mode

mounts_under() { # lists mount points at or below $1 (deepest first)
  awk -v p="$1" '$2 == p || index($2, p "/") == 1 {print $2}' /proc/self/mounts | sort -ru
}

unmount_all() {
  local m
  for m in $(mounts_under "$ROOT"); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "could not unmount $m"
  done
}

mount_root() {
  mkdir -p "$ROOT/proc" "$ROOT/sys" "$ROOT/dev"
  mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
  mountpoint -q "$ROOT/sys" || mount -t sysfs sysfs "$ROOT/sys" || log "no /sys in the root"
  if ! mountpoint -q "$ROOT/dev"; then
    mount --rbind /dev "$ROOT/dev"
    mount --make-rslave "$ROOT/dev" 2>/dev/null || true
  fi
  cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || log "no /etc/resolv.conf to copy"
  if [[ -d /usr/local/share/ca-certificates ]] && [[ -d $ROOT/usr/local/share ]]; then
    # A TLS-intercepting proxy's CA (if the host trusts one) must be trusted inside too.
    mkdir -p "$ROOT/usr/local/share/ca-certificates"
    cp -r /usr/local/share/ca-certificates/. "$ROOT/usr/local/share/ca-certificates/"
    if [[ -x $ROOT/usr/sbin/update-ca-certificates ]]; then
      chroot "$ROOT" /usr/sbin/update-ca-certificates >/dev/null 2>&1 || true
    fi
  fi
}

# Environment inside the root: nothing of the host's but proxies and package indexes.
root_env() {
  local env=(
    HOME=/root PATH="$VENV_IN_ROOT/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    LANG=C.UTF-8 LC_ALL=C.UTF-8 TERM="${TERM:-dumb}" PYTHONDONTWRITEBYTECODE=1
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
    TF_CPP_MIN_LOG_LEVEL=2 KERAS_BACKEND=tensorflow
  )
  local v
  for v in PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_TRUSTED_HOST HTTP_PROXY HTTPS_PROXY NO_PROXY \
    http_proxy https_proxy no_proxy FASHION_KERAS_TFX_E2E_STEPS CI; do
    if [[ -n ${!v:-} ]] && [[ ${!v} != file:* ]]; then env+=("$v=${!v}"); fi
  done
  printf '%s\n' "${env[@]}"
}

in_root() { # in_root CMD...: runs CMD in the root's project folder
  local env_lines=()
  mapfile -t env_lines < <(root_env)
  chroot "$ROOT" /usr/bin/env -i "${env_lines[@]}" /bin/bash -c 'cd "$0" 2>/dev/null || cd /; exec "$@"' \
    "$SRC_IN_ROOT" "$@"
}

copy_project() { # the working tree (not .git, venvs, runs or caches) into $ROOT/src
  local dst="$ROOT$SRC_IN_ROOT"
  [[ -n $ROOT && $dst == */src ]] || die "refusing to refresh $dst"
  rm -rf "$dst"
  mkdir -p "$dst"
  tar -C "$REPO" --exclude=./.git --exclude=./.venv --exclude=./runs --exclude='*.egg-info' \
    --exclude=__pycache__ --exclude=.pytest_cache --exclude=.ruff_cache --exclude=./build \
    --exclude=./.cache -cf - . | tar -C "$dst" -xf -
}

setup_hash() { sha256sum "$REPO/setup.py" | awk '{print $1}'; }

build_root() {
  local stamp="$ROOT/.fashion_keras_tfx_root"
  local want="recipe=$RECIPE_VERSION suite=$SUITE packages=$BASE_PACKAGES"
  if [[ -f $stamp ]] && [[ "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
  local started=$SECONDS
  log "building the Debian 13 root in $ROOT (once; about 4.5 GB)"
  check_reachable "$MIRROR/dists/$SUITE/Release" "the Debian mirror"
  check_reachable "${PYPI_URL%/}/tfx/" "the Python package index"
  if ! command -v debootstrap >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 ||
      die "debootstrap is not installed and there is no apt-get to install it; install" \
        "debootstrap (https://wiki.debian.org/Debootstrap) or run on a glibc >= 2.39 host"
    mkdir -p "$CACHE_BASE"
    if ! apt-get install -y debootstrap >"$CACHE_BASE/apt-debootstrap.log" 2>&1; then
      step "apt-get update" "$CACHE_BASE/apt-update.log" apt-get update
      step "apt-get install debootstrap" "$CACHE_BASE/apt-debootstrap.log" \
        apt-get install -y debootstrap
    fi
  fi
  [[ -d /usr/share/debootstrap/scripts ]] && [[ ! -e /usr/share/debootstrap/scripts/$SUITE ]] &&
    die "this debootstrap ($(debootstrap --version 2>/dev/null)) does not know $SUITE; update it"
  unmount_all
  if [[ -n "$(mounts_under "$ROOT")" ]]; then
    die "something is still mounted under $ROOT; unmount it before rebuilding"
  fi
  rm -rf "$ROOT"
  mkdir -p "$(dirname "$ROOT")"
  local logs="$(dirname "$ROOT")"
  step "debootstrap $SUITE (minbase + python3)" "$logs/debootstrap.log" \
    debootstrap --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$ROOT" "$MIRROR"
  mount_root
  step "python venv in the root" "$logs/venv.log" in_root python3 -m venv "$VENV_IN_ROOT"
  step "pip/setuptools upgrade" "$logs/pip-base.log" in_root "$VENV_IN_ROOT/bin/pip" install \
    --no-cache-dir -U pip setuptools wheel
  printf '%s' "$want" >"$stamp"
  rm -f "$ROOT/.fashion_keras_deps"
  log "root base ready in $((SECONDS - started)) s"
}

refresh_project() {
  local deps_stamp="$ROOT/.fashion_keras_deps" started=$SECONDS
  copy_project
  local want
  want="$(setup_hash) ${PIP_PINS[*]}"
  local logs="$(dirname "$ROOT")"
  if [[ ! -f $deps_stamp ]] || [[ "$(cat "$deps_stamp")" != "$want" ]]; then
    check_reachable "${PYPI_URL%/}/tfx/" "the Python package index"
    step "pip install tensorflow, tfx and the project (about 4 GB, once per setup.py)" \
      "$logs/pip-install.log" in_root "$VENV_IN_ROOT/bin/pip" install --no-cache-dir \
      "${PIP_PINS[@]}" -e "$SRC_IN_ROOT[tfx]"
    printf '%s' "$want" >"$deps_stamp"
    log "dependencies installed in $((SECONDS - started)) s"
  else
    step "refresh the project in the root" "$logs/pip-refresh.log" in_root \
      "$VENV_IN_ROOT/bin/pip" install --no-deps --no-build-isolation -e "$SRC_IN_ROOT"
  fi
}

chroot_main() {
  local cmd="$1"
  shift
  if [[ $(id -u) != 0 ]]; then
    unsupported "the Debian 13 root needs root (debootstrap, mount, chroot) and this is uid" \
      "$(id -u) on glibc $(glibc_version); run as root, or on a glibc >= 2.39 host natively"
  fi
  command -v chroot >/dev/null 2>&1 || die "no chroot command (coreutils) on this host"
  mkdir -p "$(dirname "$ROOT")"
  exec 9>"$(dirname "$ROOT")/.tfx-root.lock"
  flock 9 || die "could not lock $(dirname "$ROOT")/.tfx-root.lock"
  trap unmount_all EXIT
  trap 'exit 130' INT TERM
  build_root
  mount_root
  refresh_project
  case "$cmd" in
  build) log "ready: $ROOT" ;;
  test) in_root python -m pytest -p no:cacheprovider tests/tfx_tests "$@" ;;
  run) in_root "$@" ;;
  shell) in_root /bin/bash -i ;;
  esac
}

# ---------------------------------------------------------------------------------------------
# native mode (glibc >= 2.39)

native_main() {
  local cmd="$1" started=$SECONDS
  shift
  command -v python3 >/dev/null 2>&1 || die "no python3 on this host"
  if [[ ! -x $NATIVE_VENV/bin/python ]]; then
    mkdir -p "$(dirname "$NATIVE_VENV")"
    step "python venv $NATIVE_VENV" "$CACHE_BASE/native-venv.log" python3 -m venv "$NATIVE_VENV"
  fi
  local stamp="$NATIVE_VENV/.fashion_keras_deps" want
  want="$(setup_hash) ${PIP_PINS[*]} $REPO"
  if [[ ! -f $stamp ]] || [[ "$(cat "$stamp")" != "$want" ]]; then
    check_reachable "${PYPI_URL%/}/tfx/" "the Python package index"
    step "pip install tensorflow, tfx and the project" "$CACHE_BASE/native-pip.log" \
      "$NATIVE_VENV/bin/pip" install "${PIP_PINS[@]}" -e "$REPO[tfx]"
    printf '%s' "$want" >"$stamp"
    log "native venv ready in $((SECONDS - started)) s"
  fi
  cd "$REPO"
  export PATH="$NATIVE_VENV/bin:$PATH" KERAS_BACKEND=tensorflow TF_CPP_MIN_LOG_LEVEL=2
  case "$cmd" in
  build) log "ready: $NATIVE_VENV" ;;
  test) python -m pytest -p no:cacheprovider tests/tfx_tests "$@" ;;
  run) "$@" ;;
  shell) bash -i ;;
  esac
}

# ---------------------------------------------------------------------------------------------

main() {
  while [[ $# -gt 0 && $1 == --* ]]; do
    case "$1" in
    --skip-if-unsupported) SKIP_IF_UNSUPPORTED=1 ;;
    --help | -h)
      sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    *) die "unknown option $1 (see --help)" ;;
    esac
    shift
  done
  local cmd="${1:-test}"
  [[ $# -gt 0 ]] && shift
  case "$cmd" in
  build | test | shell) ;;
  run) [[ $# -gt 0 ]] || die "run needs a command, e.g. run python -m pipelines.local_runner" ;;
  clean)
    [[ $(id -u) == 0 ]] && unmount_all
    [[ -z "$(mounts_under "$ROOT")" ]] || die "something is still mounted under $ROOT"
    rm -rf "$ROOT" "$NATIVE_VENV"
    log "removed $ROOT and $NATIVE_VENV"
    exit 0
    ;;
  *) die "unknown command $cmd; expected build, test, run, shell or clean (see --help)" ;;
  esac
  case "$MODE" in
  native) native_main "$cmd" "$@" ;;
  chroot) chroot_main "$cmd" "$@" ;;
  auto)
    if glibc_at_least 2.39; then
      log "glibc $(glibc_version) >= 2.39: running natively"
      native_main "$cmd" "$@"
    else
      log "glibc $(glibc_version) < 2.39: running in the Debian 13 root $ROOT"
      chroot_main "$cmd" "$@"
    fi
    ;;
  *) die "FASHION_KERAS_TFX_MODE=$MODE: expected auto, chroot or native" ;;
  esac
}

main "$@"
