# shellcheck shell=bash
# Helpers shared by scripts/run and scripts/test. Source it; don't execute it.

# System packages needed to build gatehouse (Debian/Ubuntu names).
# scripts/test adds its own test-only packages on top of these.
GATEHOUSE_BUILD_PACKAGES=(pkg-config libssl-dev libsqlite3-dev libpq-dev libclang-dev libxml2-dev libxmlsec1-dev libxmlsec1-openssl libxslt1-dev)

step() {
    printf '==> %s\n' "$*"
}

# ensure_packages PKG...: install (with apt-get) whichever of PKG... are missing.
# Runs `apt-get update` at most once per script run. Needs root or sudo; without
# either it lists what is missing and exits 1.
_gatehouse_apt_updated=0
ensure_packages() {
    local missing=() pkg
    if ! command -v dpkg >/dev/null 2>&1; then
        printf '    dpkg not found: not a Debian/Ubuntu system, make sure these are installed: %s\n' "$*"
        return 0
    fi
    for pkg in "$@"; do
        # "install ok installed" only: a removed package leaves a "deinstall" record behind.
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed'; then
            missing+=("$pkg")
        fi
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        echo "    all present: $*"
        return 0
    fi
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo=(sudo)
        else
            echo "    missing system packages: ${missing[*]}" >&2
            echo "    not root and no sudo: install them with 'apt-get install ${missing[*]}' and rerun" >&2
            exit 1
        fi
    fi
    echo "    installing: ${missing[*]}"
    if [ "$_gatehouse_apt_updated" -eq 0 ]; then
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
        _gatehouse_apt_updated=1
    fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# file_hash FILE...: one sha256 over the given files (missing files count as empty).
file_hash() {
    local f
    for f in "$@"; do
        printf '%s\n' "$f"
        if [ -f "$f" ]; then cat "$f"; fi
    done | sha256sum | cut -d' ' -f1
}
