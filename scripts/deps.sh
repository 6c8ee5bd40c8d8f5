# Sourced by scripts/demo.sh and scripts/test.sh: installs the Debian/Ubuntu packages a script
# needs when they are missing, so one command works on a fresh machine. As root it calls apt-get
# directly; otherwise it uses sudo if there is one. On a system without dpkg it only checks that
# the commands exist and leaves installing to you.

# logquant_ensure_packages PACKAGE... : apt-get install whichever of PACKAGE... is missing.
logquant_ensure_packages() {
  if ! command -v dpkg-query >/dev/null 2>&1; then
    local tool
    for tool in cmake c++; do
      command -v "$tool" >/dev/null 2>&1 || {
        echo "error: '$tool' not found; install the equivalents of: $*" >&2
        return 1
      }
    done
    echo "note: not a Debian-based system; assuming these are installed: $*" >&2
    return 0
  fi
  local missing=() pkg status
  for pkg in "$@"; do
    status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
    [ "$status" = "install ok installed" ] || missing+=("$pkg")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0

  local as_root=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
      as_root=(sudo)
    else
      echo "error: missing packages (${missing[*]}) and not root; run as root or install them" >&2
      return 1
    fi
  fi
  echo "==> installing missing packages: ${missing[*]}"
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# Parallel jobs for builds and ctest: every core.
logquant_jobs() {
  nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2
}
