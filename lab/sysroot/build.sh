#!/usr/bin/env bash
# Builds the root file system that make test's second round takes RabbitMQ
# and nginx from, and make test-docker its stand-in images: Debian forky
# (the release after Debian 12), whose packages carry the versions of the
# compose images, RabbitMQ 4.3 and nginx 1.30, with Erlang 29.
#
#   lab/sysroot/build.sh DIR
#
# DIR is made once and reused; this script's own hash is part of its name in
# the Makefile, so a change here builds a new one. Needs root (debootstrap,
# chroot) and Debian's package mirror; takes about a minute.
set -euo pipefail

dir=${1:?usage: build.sh DIR}
if [ -e "$dir/.complete" ]; then
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "Building $dir needs root (debootstrap and chroot): run 'sudo make sysroot', then make again." >&2
	exit 1
fi
if ! command -v debootstrap >/dev/null; then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

# The mirror the machine's apt already uses.
mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)
if [ -z "$mirror" ]; then
	mirror=$(awk '$1 == "deb" && $2 !~ /security/ { print $2; exit }' /etc/apt/sources.list 2>/dev/null)
fi
mirror=${mirror:-http://deb.debian.org/debian}

tmp="$dir.tmp"
rm -rf "$tmp"
mkdir -p "$(dirname "$dir")"
echo "Building a Debian forky root file system in $dir (RabbitMQ 4.3, nginx 1.30), from $mirror..."
# forky is testing: debootstrap's sid script knows how to install it.
debootstrap --variant=minbase forky "$tmp" "$mirror" /usr/share/debootstrap/scripts/sid >"$tmp.log" 2>&1 ||
	{ tail -n 20 "$tmp.log" >&2; exit 1; }

# Packages install without starting their services (there is no init here).
printf '#!/bin/sh\nexit 101\n' >"$tmp/usr/sbin/policy-rc.d"
chmod +x "$tmp/usr/sbin/policy-rc.d"
cp /etc/resolv.conf "$tmp/etc/resolv.conf"
# The mirror's Release files for forky can be past their Valid-Until date.
echo 'Acquire::Check-Valid-Until "false";' >"$tmp/etc/apt/apt.conf.d/99lab-valid-until"
# rabbitmq-server, nginx: what the tests run. ca-certificates: what stand-in
# images trust. busybox (wget) and gettext-base (envsubst): what the nginx
# image's healthcheck and entrypoint use. docker-compose: Compose v2 for
# hosts whose own is older (Debian 12 has v1).
chroot "$tmp" sh -c 'apt-get update -qq &&
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		rabbitmq-server nginx ca-certificates busybox gettext-base docker-compose' >>"$tmp.log" 2>&1 ||
	{ tail -n 20 "$tmp.log" >&2; exit 1; }
chroot "$tmp" apt-get clean
rm -f "$tmp/etc/resolv.conf"
# Nothing of the packages' own services runs from here: the lab starts its
# own brokers and gateways with their own configuration.
chroot "$tmp" dpkg-query -W -f '${Package} ${Version}\n' rabbitmq-server nginx erlang-base docker-compose >"$tmp/.versions"
touch "$tmp/.complete"
rm -rf "$dir"
mv "$tmp" "$dir"
rm -f "$tmp.log"
cat "$dir/.versions"
