// Package dockertest runs the lab as learners on Docker do: docker compose
// up -d --build --wait on a real Docker engine, then requests through the
// published gateway, a broker restart that keeps queued messages, service02
// stopped and started again, and docker compose down -v at the end. Its tests
// build only with the tag "docker": make test-docker runs them.
package dockertest
