// Package compose keeps the Docker path of the lab true without a Docker
// engine. It has no code of its own; its tests load docker-compose.yml with
// compose-go, the library `docker compose` is built on, and check it, the
// services' Dockerfiles and their .dockerignore files against the rest of the
// lab: .env.example, the services' config structs, the nginx template (which
// they render and give to a real nginx -t) and go.work.
//
// What only a real `docker compose up` proves is listed in
// docs/how-to/run-with-docker.md.
package compose
