#!/usr/bin/env bash
# Makes sure the Docker engine has the four images the lab's compose file and
# Dockerfiles name. An image the engine has, or can pull, is used as it is;
# otherwise a stand-in is built under the official name from Debian's
# packages of the same versions, and this says so (standins/README.md).
#
#   lab/dockertest/standins.sh SYSROOT
#
# SYSROOT is the Debian forky tree make sysroot builds (RabbitMQ 4.3, nginx
# 1.30). Prints one line per image: "official IMAGE" or "stand-in IMAGE".
set -euo pipefail

sysroot=${1:?usage: standins.sh SYSROOT}
here=$(cd "$(dirname "$0")" && pwd)
# Stand-ins are rebuilt when their recipe, the sysroot or the machine's Go
# (the Go image's stand-in) changes.
recipe=$( (cd "$here" && find standins standins.sh -type f | sort | xargs sha256sum; cat "$sysroot/.versions"; go version) | sha256sum | cut -c1-12)
base=pingpong-standin/forky:$recipe

# label IMAGE: the stand-in label's value, empty for an official image; fails
# when the engine has no such image.
label() { docker image inspect -f '{{with .Config.Labels}}{{index . "org.pingpong.standin"}}{{end}}' "$1" 2>/dev/null; }

# have IMAGE: is IMAGE there already, official or a current stand-in?
have() {
	local l
	l=$(label "$1") || return 1
	case "$l" in
	"") echo "official $1 (already on this engine)" ;;
	"$recipe") echo "stand-in $1 (built earlier from Debian's packages)" ;;
	*) return 1 ;;
	esac
}

pull() {
	# A machine that reaches no registry fails here at once or on time-out.
	if timeout 120 docker pull -q "$1" >/dev/null 2>&1; then
		echo "official $1 (pulled)"
		return 0
	fi
	return 1
}

ensure_base() {
	docker image inspect "$base" >/dev/null 2>&1 && return 0
	# The sysroot as an image; /proc and /dev are filled in by the engine.
	tar -C "$sysroot" --exclude=./proc/* --exclude=./dev/* --exclude=./.complete -c . |
		docker import - "$base-debian" >/dev/null
	# Containers trust only what their image trusts: give it the CA bundle
	# the machine trusts, so that builds reach the Go module proxy as the
	# machine does.
	local ctx
	ctx=$(mktemp -d)
	cp /etc/ssl/certs/ca-certificates.crt "$ctx/"
	printf 'FROM %s\nCOPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt\n' "$base-debian" |
		docker build -q --force-rm -t "$base" -f - "$ctx" >/dev/null
	rm -rf "$ctx"
}

build() { # IMAGE CONTEXT DOCKERFILE
	ensure_base
	docker build -q --force-rm --build-arg BASE="$base" --label org.pingpong.standin="$recipe" \
		-t "$1" -f "$3" "$2" >/dev/null
	echo "stand-in $1 (built from Debian's packages: no registry reachable)"
}

image=rabbitmq:4.3-management
have $image || pull $image || build $image "$here/standins/rabbitmq" "$here/standins/rabbitmq/Dockerfile"

image=nginx:1.30-alpine
have $image || pull $image || build $image "$here/standins/nginx" "$here/standins/nginx/Dockerfile"

image=golang:1.26-bookworm
have $image || pull $image || build $image "$(go env GOROOT)" "$here/standins/golang/Dockerfile"

image=gcr.io/distroless/static-debian12:nonroot
if ! have $image && ! pull $image; then
	ctx=$(mktemp -d)
	trap 'rm -rf "$ctx"' EXIT
	cp -r "$here/standins/distroless/rootfs" "$ctx/rootfs"
	mkdir -p "$ctx/rootfs/etc/ssl/certs" "$ctx/rootfs/tmp" "$ctx/rootfs/home/nonroot"
	chmod 1777 "$ctx/rootfs/tmp"
	chown 65532:65532 "$ctx/rootfs/home/nonroot"
	# The CA bundle the machine trusts, as the image has Debian's.
	cp /etc/ssl/certs/ca-certificates.crt "$ctx/rootfs/etc/ssl/certs/"
	build $image "$ctx" "$here/standins/distroless/Dockerfile"
fi

# Stand-ins of earlier recipes are no longer named by anything: remove them.
docker image ls --format '{{.Repository}}:{{.Tag}}' pingpong-standin/forky |
	grep -v -e ":$recipe\$" -e ":$recipe-debian\$" | xargs -r docker image rm >/dev/null 2>&1 || true
docker image prune -f --filter label=org.pingpong.standin >/dev/null 2>&1 || true
