#!/usr/bin/env bash
# A skopeo that verifies cosign-format (sigstore) signatures, for the signing tests.
#
# Debian 12's skopeo 1.9 is built without sigstore support, so it rejects every
# sigstoreSigned policy. Debian 13 (trixie) ships 1.18, which has it. When the
# machine's own skopeo is older than 1.18 (or missing), this script fetches
# trixie's skopeo and the libraries it links against with `apt-get download`,
# from a PRIVATE apt configuration (its own sources list, lists, cache and an
# empty dpkg status under the cache directory; the system's apt sources and
# package database are never touched), unpacks them with `dpkg -x` into a
# private root, and writes a wrapper that runs the binary through trixie's own
# dynamic loader (`ld-linux-*.so --library-path <private libs>`).
#
# Result: $BROKKR_SKOPEO_DIR/bin/skopeo (default .cache/skopeo/bin/skopeo), the
# path tests/support/skopeo.py looks for. Nothing is done when it already works, or
# when the system's skopeo is 1.18 or newer (the tests use that one then).
set -euo pipefail
cd "$(dirname "$0")/.."

dest=${BROKKR_SKOPEO_DIR:-.cache/skopeo}
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
wrapper=$dest/bin/skopeo

version_ok() { # skopeo version X.Y.Z >= 1.18
  local v
  v=$("$1" --version 2>/dev/null | sed -n 's/^skopeo version \([0-9]*\)\.\([0-9]*\).*/\1 \2/p')
  [ -n "$v" ] && set -- $v && { [ "$1" -gt 1 ] || { [ "$1" -eq 1 ] && [ "$2" -ge 18 ]; }; }
}

if command -v skopeo >/dev/null 2>&1 && version_ok "$(command -v skopeo)"; then exit 0; fi
if [ -x "$wrapper" ] && version_ok "$wrapper"; then exit 0; fi

case "$(dpkg --print-architecture)" in
  amd64) triple=x86_64-linux-gnu loader=ld-linux-x86-64.so.2 ;;
  arm64) triple=aarch64-linux-gnu loader=ld-linux-aarch64.so.1 ;;
  *) echo "skopeo.sh: no recipe for $(dpkg --print-architecture)" >&2; exit 1 ;;
esac

keyring=/usr/share/keyrings/debian-archive-keyring.gpg
if [ ! -s "$keyring" ]; then # a non-Debian machine given BROKKR_DEBIAN_MIRROR: Debian's archive keys
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debian-archive-keyring >/dev/null
fi

apt_dir=$dest/apt
mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$apt_dir/debs"
# The Debian archive this machine already installs from (its own apt sources,
# the stanza of its release, not -security or -updates), or BROKKR_DEBIAN_MIRROR.
mirror=${BROKKR_DEBIAN_MIRROR:-$(python3 - <<'PY'
import glob, os, re
release = dict(
    line.rstrip("\n").split("=", 1) for line in open("/etc/os-release") if "=" in line
)
codename = release.get("VERSION_CODENAME", "").strip('"')
if release.get("ID", "").strip('"') != "debian":
    codename = ""  # another distribution's archive has no trixie
found = []
for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    for stanza in re.split(r"\n\s*\n", open(path).read()):
        fields = {}
        for line in stanza.splitlines():
            if ":" in line and not line.lstrip().startswith("#"):
                key, value = line.split(":", 1)
                fields[key.strip().lower()] = value.split()
        if "deb" in fields.get("types", []) and codename in fields.get("suites", []):
            found += fields.get("uris", [])
for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]:
    if os.path.exists(path):
        for line in open(path):
            words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
            if len(words) >= 3 and words[0] == "deb" and words[2] == codename:
                found.append(words[1])
print(found[0] if found else "")
PY
)}
if [ -z "$mirror" ]; then
  echo "skopeo.sh: no Debian archive in this machine's apt sources; set BROKKR_DEBIAN_MIRROR" >&2
  exit 1
fi
echo "deb [signed-by=$keyring] $mirror trixie main" >"$apt_dir/sources.list"
: >"$apt_dir/status"
apt_opts=(
  -o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::State=$apt_dir" -o "Dir::State::Lists=$apt_dir/lists"
  -o "Dir::State::status=$apt_dir/status" -o "Dir::Cache=$apt_dir"
  -o "Dir::Cache::archives=$apt_dir/archives" -o Debug::NoLocking=1
  -o APT::Sandbox::User=root
)
apt-get "${apt_opts[@]}" -qq update
# skopeo's NEEDED libraries (libgpgme, libsqlite3, libc) and theirs (libassuan, libgpg-error).
packages=(skopeo libc6 libgpgme11t64 libassuan9 libgpg-error0 libsqlite3-0)
rm -f "$apt_dir/debs"/*.deb
(cd "$apt_dir/debs" && apt-get "${apt_opts[@]}" -qq download "${packages[@]}")

root=$dest/root
rm -rf "$root"
for deb in "$apt_dir/debs"/*.deb; do dpkg -x "$deb" "$root"; done
libs=$root/usr/lib/$triple
mkdir -p "$dest/bin"
cat >"$wrapper" <<EOF
#!/bin/sh
# Debian 13's skopeo from a private root, through its own loader (written by .ci/skopeo.sh).
exec "$libs/$loader" --library-path "$libs" "$root/usr/bin/skopeo" "\$@"
EOF
chmod +x "$wrapper"

# Every library must resolve inside the private root, and the binary must run.
if "$libs/$loader" --library-path "$libs" --list "$root/usr/bin/skopeo" | grep -q "not found"; then
  echo "skopeo.sh: a library of trixie's skopeo is missing from ${packages[*]}" >&2
  exit 1
fi
version_ok "$wrapper" || { echo "skopeo.sh: $wrapper does not run" >&2; exit 1; }
echo "skopeo.sh: $("$wrapper" --version) at $wrapper"
