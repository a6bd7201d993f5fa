#!/usr/bin/env bash
# Usage: scripts/local-base.sh [--force] [--tag NAME] [--mirror URI]
#
# Build a Debian bookworm base image locally, for machines that cannot pull
# from Docker Hub (CI, air-gapped hosts). It runs
#   debootstrap --variant=minbase bookworm ROOT MIRROR
# trims the result the way debian:bookworm-slim is trimmed (no man pages, docs
# or locales; apt lists and caches emptied), then
#   tar -C ROOT -c . | docker import - NAME
# and tags it NAME, by default the name docker/Dockerfile uses as its base, so
# that ./build.sh works unchanged afterwards.
#
#   --force        rebuild even when NAME already exists
#   --tag NAME     image name (default: debian:bookworm-slim, or $BASE_IMAGE)
#   --mirror URI   Debian mirror (default: $DEBIAN_MIRROR, else the first
#                  non-security URI in /etc/apt/sources.list.d/*.sources or
#                  /etc/apt/sources.list, else http://deb.debian.org/debian)
#   -h, --help     show this text
#
# Environment: DEBIAN_SECURITY_MIRROR sets the security mirror written into the
# image's apt sources (default: found like the mirror, else
# http://deb.debian.org/debian-security).
#
# Needs root, debootstrap and a running Docker engine. Takes about half a minute.
set -euo pipefail

die() {
  printf 'tensor-guess: %s\n' "$*" >&2
  exit 1
}

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

SUITE=bookworm
tag="${BASE_IMAGE:-debian:bookworm-slim}"
mirror="${DEBIAN_MIRROR:-}"
security_mirror="${DEBIAN_SECURITY_MIRROR:-}"
force=0

while (($#)); do
  case "$1" in
    --force) force=1 ;;
    --tag)
      (($# >= 2)) || die "--tag needs a value"
      tag="$2"
      shift
      ;;
    --tag=*) tag="${1#*=}" ;;
    --mirror)
      (($# >= 2)) || die "--mirror needs a value"
      mirror="$2"
      shift
      ;;
    --mirror=*) mirror="${1#*=}" ;;
    -h | --help)
      usage
      exit 0
      ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
  shift
done

# Print the host's apt source URIs, one per line (deb822 files first).
host_apt_uris() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -r "$f" ]] || continue
    sed -n 's/^URIs:[[:space:]]*//p' "$f" | tr -s ' \t' '\n'
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -r "$f" ]] || continue
    # deb [options] URI suite components...
    sed -n 's/^[[:space:]]*deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\{0,1\}\([^[:space:]]\+\).*/\2/p' "$f"
  done
}

if [[ -z "$mirror" ]]; then
  mirror="$(host_apt_uris | grep -v -- '-security' | grep -m1 . || true)"
  mirror="${mirror:-http://deb.debian.org/debian}"
fi
if [[ -z "$security_mirror" ]]; then
  security_mirror="$(host_apt_uris | grep -m1 -- '-security' || true)"
  security_mirror="${security_mirror:-http://deb.debian.org/debian-security}"
fi

command -v docker >/dev/null 2>&1 || die "docker is not installed"
docker info >/dev/null 2>&1 || die "no Docker engine answers (start dockerd first)"

if ((!force)) && docker image inspect "$tag" >/dev/null 2>&1; then
  printf 'tensor-guess: %s already exists, nothing to do (use --force to rebuild)\n' "$tag" >&2
  exit 0
fi

((EUID == 0)) || die "debootstrap needs root"
command -v debootstrap >/dev/null 2>&1 || die "debootstrap is not installed (apt-get install -y debootstrap)"

SECONDS=0
work="$(mktemp -d "${TMPDIR:-/var/tmp}/tensor-guess-base.XXXXXX")"
root="$work/root"

cleanup() {
  local m
  # debootstrap mounts /proc and /sys inside the root; never delete through them.
  for m in proc/sys/fs/binfmt_misc proc sys dev/pts; do
    if mountpoint -q "$root/$m" 2>/dev/null; then umount -l "$root/$m" || true; fi
  done
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT

printf 'tensor-guess: debootstrap %s from %s\n' "$SUITE" "$mirror" >&2
debootstrap --variant=minbase "$SUITE" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -n 30 "$work/debootstrap.log" >&2
  die "debootstrap failed (log above)"
}

# Same trimming as the official slim images.
cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
EOF
cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
printf 'Acquire::Languages "none";\n' >"$root/etc/apt/apt.conf.d/docker-no-languages"
printf 'APT::AutoRemove::SuggestsImportant "false";\n' >"$root/etc/apt/apt.conf.d/docker-autoremove-suggests"

# apt sources as in debian:bookworm-slim: release, updates and security.
rm -f "$root/etc/apt/sources.list"
cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security_mirror
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF

find "$root/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete 2>/dev/null || true
find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
rm -rf "${root:?}"/usr/share/man/* "${root:?}"/usr/share/info/* "${root:?}"/usr/share/locale/* \
  "${root:?}"/var/cache/apt/archives/*.deb "${root:?}"/var/cache/apt/*.bin \
  "${root:?}"/var/lib/apt/lists/* "${root:?}"/var/log/*.log "${root:?}"/var/log/apt/* \
  "${root:?}"/tmp/* "${root:?}"/root/.bash_history
: >"$root/etc/machine-id"
printf 'tensor-guess: debootstrap done in %ss, importing as %s\n' "$SECONDS" "$tag" >&2

tar --numeric-owner -C "$root" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["bash"]' \
  --change "LABEL org.opencontainers.image.description=\"Debian $SUITE minbase, built locally by tensor-guess scripts/local-base.sh from $mirror\"" \
  --message "tensor-guess scripts/local-base.sh: debootstrap --variant=minbase $SUITE $mirror" \
  - "$tag" >/dev/null

size="$(docker image inspect --format '{{.Size}}' "$tag")"
printf 'tensor-guess: built %s (%s MB) in %ss\n' "$tag" "$((size / 1000000))" "$SECONDS" >&2
