#!/usr/bin/env bash
# Makes the two base images the Compose stack needs, from Debian packages alone, for a Docker engine that cannot
# reach an image registry:
#   PYTHON_IMAGE  Debian bookworm's Python 3.11 (as in python:3.11-slim-bookworm) in a venv at /opt/python
#   NGINX_IMAGE   Debian's nginx with an entrypoint that renders /etc/nginx/templates/*.template as the official
#                 nginx image does, so docker-compose.yml's nginx service runs on it unchanged
# Each tag carries a hash of this recipe and of the CA bundle copied in; an image already there is kept.
# Prints PYTHON_IMAGE=... and NGINX_IMAGE=... on stdout, for `docker compose` (or `export $(deploy/base-images/build.sh)`).
#
# Needs root, debootstrap and docker. Options come from the environment:
#   DEBIAN_MIRROR  the Debian mirror (default: the first one in this machine's apt sources)
#   CA_BUNDLE      CA certificates pip inside the build trusts (default: /etc/ssl/certs/ca-certificates.crt)
#   WORK_DIR       where the root filesystems are made (default: a temporary directory, removed at the end)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
suite=bookworm
docker="${DOCKER:-docker}"
ca_bundle="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"

apt_mirror() {
    # deb822 sources (URIs: ...) first, then one-line sources (deb URL suite ...).
    local uri
    uri="$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)"
    if [ -z "$uri" ]; then
        uri="$(sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]*\).*/\2/p' \
            /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -n1)"
    fi
    [ -n "$uri" ] || { echo "no Debian mirror in /etc/apt/sources*: set DEBIAN_MIRROR" >&2; exit 2; }
    echo "$uri"
}

for tool in debootstrap "$docker"; do
    command -v "$tool" >/dev/null || { echo "$0 needs $tool (Debian: apt-get install debootstrap docker.io)" >&2; exit 2; }
done
[ -r "$ca_bundle" ] || { echo "no CA bundle at $ca_bundle: set CA_BUNDLE" >&2; exit 2; }

recipe="$(cat "$here/build.sh" "$here/nginx-entrypoint.sh" "$ca_bundle" | sha256sum | cut -c1-12)"
python_image="resnet-service-base/python:3.11-$suite-$recipe"
nginx_image="resnet-service-base/nginx:$suite-$recipe"

have() { "$docker" image inspect "$1" >/dev/null 2>&1; }

if have "$python_image" && have "$nginx_image"; then
    echo "PYTHON_IMAGE=$python_image"
    echo "NGINX_IMAGE=$nginx_image"
    exit 0
fi

mirror="${DEBIAN_MIRROR:-$(apt_mirror)}"
if [ -n "${WORK_DIR:-}" ]; then
    work="$WORK_DIR"
    mkdir -p "$work"
else
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work/debs"

rootfs() {  # rootfs DIR PACKAGES: a minimal Debian with PACKAGES, apt's caches emptied
    rm -rf "$1"
    debootstrap --variant=minbase --cache-dir="$work/debs" --include="$2" "$suite" "$1" "$mirror" >"$1.log" 2>&1 \
        || { cat "$1.log" >&2; exit 1; }
    rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/cache/apt/archives/*.deb "$1"/var/log/*.log
}

import() {  # import DIR NAME CHANGE...: the root filesystem as an image
    local dir="$1" name="$2"
    shift 2
    local changes=()
    for change in "$@"; do changes+=(--change "$change"); done
    tar --numeric-owner -C "$dir" -c . | "$docker" import "${changes[@]}" - "$name" >/dev/null
}

if ! have "$python_image"; then
    dir="$work/python"
    rootfs "$dir" python3,python3-venv,ca-certificates
    chroot "$dir" python3 -m venv /opt/python
    # pip in the image trusts what pip on this machine trusts (a proxy's CA included).
    cp "$ca_bundle" "$dir/etc/ssl/certs/build-ca-bundle.crt"
    printf '[global]\ncert = /etc/ssl/certs/build-ca-bundle.crt\n' >"$dir/etc/pip.conf"
    import "$dir" "$python_image" \
        'ENV PATH=/opt/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        'ENV LANG=C.UTF-8' \
        'CMD ["python3"]'
fi

if ! have "$nginx_image"; then
    dir="$work/nginx"
    rootfs "$dir" nginx-light,gettext-base,wget,ca-certificates
    rm -f "$dir/etc/nginx/sites-enabled/default"
    mkdir -p "$dir/etc/nginx/templates"
    ln -sf /dev/stdout "$dir/var/log/nginx/access.log"
    ln -sf /dev/stderr "$dir/var/log/nginx/error.log"
    install -m 0755 "$here/nginx-entrypoint.sh" "$dir/docker-entrypoint.sh"
    import "$dir" "$nginx_image" \
        'ENTRYPOINT ["/docker-entrypoint.sh"]' \
        'CMD ["nginx", "-g", "daemon off;"]' \
        'EXPOSE 80'
fi

echo "PYTHON_IMAGE=$python_image"
echo "NGINX_IMAGE=$nginx_image"
