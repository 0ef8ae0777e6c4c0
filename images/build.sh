#!/usr/bin/env bash
# Build Ruby Core's four images, and the development image compose/docker-compose.yml runs its
# services on (`live`: every program, editable from /src), with buildah (no daemon) and check
# each: its `--version` run
# inside it names this version and commit, it runs as the non-root user, it holds no uv and no
# compiler; print each image's size. Usage: images/build.sh [BASE_IMAGE] (default: the Debian
# base that images/base.sh makes). A machine whose egress re-signs TLS passes its CA bundle
# to the build as a secret (RUBY_BUILD_CA, default the system bundle when present); it is never
# stored in an image.
set -euo pipefail
cd "$(dirname "$0")/.."
export STORAGE_DRIVER="${STORAGE_DRIVER:-vfs}" BUILDAH_ISOLATION="${BUILDAH_ISOLATION:-chroot}"
base="${1:-localhost/ruby-base:bookworm}"
[[ "$base" == localhost/ruby-base:* ]] && bash images/base.sh "$base"
revision="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
version="$(sed -n 's/^VERSION: Final = "\(.*\)"$/\1/p' pkg/runtime/src/ruby_runtime/version.py)"
ca="${RUBY_BUILD_CA:-/etc/ssl/certs/ca-certificates.crt}"
secret=()
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
[[ -s "$ca" ]] && secret=(--secret "id=ca,src=$ca")

# image name : workspace package : program : Dockerfile stage
images=(
  "gateway:ruby-gateway:ruby-gateway:service"
  "engine:ruby-engine:ruby-engine:service"
  "audit-sink:ruby-audit-sink:ruby-audit-sink:service"
  "rubyctl:ruby-ctl:rubyctl:cli"
  "live:ruby-ctl:rubyctl:live"
)
for entry in "${images[@]}"; do
  IFS=: read -r name package program stage <<< "$entry"
  tag="localhost/ruby-core-$name:$version"
  echo "image $tag: building ($package)"
  # Docker's image format: the OCI format has no HEALTHCHECK, and buildah would drop it.
  buildah build --quiet --layers --format docker "${secret[@]}" \
    --build-arg BASE_IMAGE="$base" --build-arg PACKAGE="$package" --build-arg COMMAND="$program" \
    --build-arg VERSION="$version" --build-arg REVISION="$revision" --target "$stage" \
    -t "$tag" . > "$log" 2>&1 || { tail -20 "$log" >&2; exit 1; }
  ctr="$(buildah from --quiet "$tag")"
  trap 'buildah rm "$ctr" > /dev/null 2>&1 || true; rm -f "$log"' EXIT
  said="$(buildah run "$ctr" -- /app/entrypoint --version)"
  [[ "$said" == "$program $version (commit $revision)" ]] \
    || { echo "image $tag: --version said '$said'" >&2; exit 1; }
  user="$(buildah run "$ctr" -- id -un)"
  [[ "$user" == ruby ]] || { echo "image $tag: runs as $user, not ruby" >&2; exit 1; }
  found="$(buildah run "$ctr" -- sh -c 'for c in uv gcc cc; do command -v "$c"; done; true')"
  [[ -z "$found" ]] || { echo "image $tag: holds $found" >&2; exit 1; }
  buildah rm "$ctr" > /dev/null
  trap 'rm -f "$log"' EXIT
  health="$(buildah inspect --format '{{with .Docker.Config.Healthcheck}}{{.Test}}{{end}}' "$tag")"
  if [[ "$stage" == service && "$health" != *--healthcheck* ]]; then
    echo "image $tag: no HEALTHCHECK ($health)" >&2; exit 1
  fi
  echo "image $tag: $said, user $user, healthcheck ${health:-none}, $(buildah images --format '{{.Size}}' "$tag")"
done
