#!/bin/sh
# As the official image's entrypoint: before nginx starts, run the scripts
# in /docker-entrypoint.d in order.
set -e
if [ "$1" = nginx ] || [ "$1" = nginx-debug ]; then
	for f in $(find /docker-entrypoint.d -follow -type f -name '*.sh' | sort -V); do
		echo "$0: Launching $f"
		"$f"
	done
	echo "$0: Configuration complete; ready for start up"
fi
exec "$@"
