#!/usr/bin/env bash
# A base image made from Debian's packages, for building and running Ruby Core's images where no
# registry is reachable (`make image-test`): Debian bookworm (minbase) with Debian's python3
# (3.11, the project's Python) and pip, committed with buildah as $1 (default
# localhost/ruby-base:bookworm). Made once: an existing image of that name is kept.
set -euo pipefail
name="${1:-localhost/ruby-base:bookworm}"
export STORAGE_DRIVER="${STORAGE_DRIVER:-vfs}" BUILDAH_ISOLATION="${BUILDAH_ISOLATION:-chroot}"
if buildah inspect --type image "$name" > /dev/null 2>&1; then
  echo "base image $name: present"
  exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "base image $name: debootstrap bookworm (minbase, python3, python3-pip; about a minute)"
debootstrap --variant=minbase --include=python3,python3-pip bookworm "$work/rootfs" \
  > "$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log"; exit 1; }
rm -rf "$work"/rootfs/var/lib/apt/lists/* "$work"/rootfs/var/cache/apt/*.bin \
  "$work"/rootfs/usr/share/doc/* "$work"/rootfs/usr/share/man/*
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .
ctr="$(buildah from scratch)"
buildah add "$ctr" "$work/rootfs.tar" / > /dev/null
buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --label org.opencontainers.image.description="Debian bookworm minbase + python3, made by images/base.sh" \
  "$ctr"
buildah commit --quiet "$ctr" "$name" > /dev/null
buildah rm "$ctr" > /dev/null
echo "base image $name: $(buildah images --format '{{.Size}}' "$name")"
