#!/bin/sh
# As the official image's entrypoint: started as root to run the broker, it
# hands the data folder to the rabbitmq user and runs as that user.
set -eu
case "$1" in
rabbitmq*)
	if [ "$(id -u)" = 0 ]; then
		if [ "$1" = rabbitmq-server ]; then
			find /var/lib/rabbitmq ! -user rabbitmq -exec chown rabbitmq '{}' +
		fi
		exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups "$0" "$@"
	fi
	;;
esac
# If the long and short host names differ, use long node names.
if [ -z "${RABBITMQ_USE_LONGNAME:-}" ] && [ "$(hostname)" != "$(hostname -s)" ]; then
	export RABBITMQ_USE_LONGNAME=true
fi
exec "$@"
