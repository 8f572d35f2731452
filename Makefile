# The lab's two commands are `make run` and `make test`; everything else here
# serves them. Both install RabbitMQ and nginx from the distribution's packages
# when they are missing (Debian and Ubuntu), so a fresh machine needs only Go.

SHELL := /bin/bash
GO ?= go
# PARTS picks what `make run` starts: any of rabbitmq service01 service02 nginx.
PARTS ?=
# Extra flags for `go test`, e.g. make test TESTFLAGS='-run TestPing -v'.
TESTFLAGS ?=
MODULES := service01 service02 lab
PACKAGES := $(addprefix ./,$(addsuffix /...,$(MODULES)))
# The root file system make test's second round takes RabbitMQ 4.3 and
# nginx 1.30 from (the compose images' versions): Debian forky, built once by
# lab/sysroot/build.sh and kept outside the checkout, so fresh clones share
# it. The script's hash is in the name: a change to it builds a new one.
SYSROOT ?= $(HOME)/.cache/pingpong-lab/sysroot-forky-$(shell sha256sum lab/sysroot/build.sh | cut -c1-12)

# httpyac, the .http client make test runs docs/lab.http with: the version
# lab/doctest/httpyac/package-lock.json pins, installed from the npm registry
# outside the checkout (fresh clones share it). A change to the lock file
# installs a new one.
HTTPYAC_DIR ?= $(HOME)/.cache/pingpong-lab/httpyac-$(shell cat lab/doctest/httpyac/package.json lab/doctest/httpyac/package-lock.json | sha256sum | cut -c1-12)

.PHONY: run stop test deps vet fmt clean help sysroot httpyac

help:
	@echo "make run    start the whole lab natively (PARTS='rabbitmq service01' for a subset)"
	@echo "make stop   stop this checkout's lab: one running in another terminal, or what an earlier run left"
	@echo "make test   vet and test every module, with the real RabbitMQ and nginx:"
	@echo "            the distribution's, then RabbitMQ 4.3 and nginx 1.30 (the compose images')"
	@echo "make test-docker  docker compose up the lab on a real Docker engine and test it"
	@echo "make sysroot  build the Debian forky tree that holds RabbitMQ 4.3 and nginx 1.30"
	@echo "make deps   install rabbitmq-server and nginx when missing"
	@echo "make fault  run the fault scenarios and print what was lost or doubled (SCENARIOS='...')"
	@echo "make bench  measure the lab beside its ceilings (docs/reference/benchmarks.md)"
	@echo "make clean  remove the native lab's state (.lab/: broker data, logs, binaries)"

run: deps
	@$(GO) build -o .lab/bin/lab ./lab
	@.lab/bin/lab run $(PARTS)

# stop stops what .lab/running/ records: the runner of a lab running in
# another terminal, or the parts an earlier run left behind.
stop:
	@$(GO) build -o .lab/bin/lab ./lab
	@.lab/bin/lab stop

# test runs every test twice: on the distribution's RabbitMQ and nginx (what
# make run uses), then on RabbitMQ 4.3 and nginx 1.30 from the sysroot (what
# docker-compose.yml's images carry). VERSIONS=distro or VERSIONS=compose
# runs one round only.
VERSIONS ?= distro compose
test: deps httpyac vet $(if $(filter compose,$(VERSIONS)),sysroot)
	@set -e; export LAB_HTTPYAC=$(HTTPYAC_DIR)/node_modules/.bin/httpyac; \
	for v in $(VERSIONS); do \
		case $$v in \
		distro) echo "== make test, round 1: the distribution's RabbitMQ and nginx"; \
			LAB_NEED_RABBITMQ=1 $(GO) test -race -count=1 -timeout 30m $(TESTFLAGS) $(PACKAGES) ;; \
		compose) echo "== make test, round 2: RabbitMQ 4.3 and nginx 1.30 from $(SYSROOT)"; \
			LAB_NEED_RABBITMQ=1 LAB_SYSROOT=$(SYSROOT) $(GO) test -race -count=1 -timeout 30m $(TESTFLAGS) $(PACKAGES) ;; \
		*) echo "VERSIONS: want distro and/or compose, got $$v" >&2; exit 2 ;; \
		esac; \
	done

# httpyac installs httpyac (above) with npm, and Node.js and npm from the
# distribution's packages when they are missing.
httpyac:
	@[ -x "$(HTTPYAC_DIR)/node_modules/.bin/httpyac" ] && exit 0; \
	if ! command -v npm >/dev/null 2>&1; then \
		command -v apt-get >/dev/null 2>&1 || { echo "make test runs docs/lab.http with httpyac, which needs Node.js 18+ and npm: install them, then run make again." >&2; exit 1; }; \
		sudo=""; \
		if [ "$$(id -u)" != 0 ]; then \
			command -v sudo >/dev/null 2>&1 || { echo "Installing Node.js and npm needs root: run 'apt-get install nodejs npm' as root, then make again." >&2; exit 1; }; \
			sudo=sudo; \
		fi; \
		echo "Installing Node.js and npm from the distribution's packages (for httpyac)..."; \
		$$sudo apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null || exit 1; \
	fi; \
	node -e 'process.exit(parseInt(process.versions.node) < 18 ? 1 : 0)' || { \
		echo "httpyac needs Node.js 18 or later; this machine has $$(node --version). Install a newer one (https://nodejs.org), then make again." >&2; exit 1; }; \
	echo "Installing httpyac into $(HTTPYAC_DIR)..."; \
	rm -rf "$(HTTPYAC_DIR).tmp" && mkdir -p "$(HTTPYAC_DIR).tmp" && \
	cp lab/doctest/httpyac/package.json lab/doctest/httpyac/package-lock.json "$(HTTPYAC_DIR).tmp/" && \
	npm ci --prefix "$(HTTPYAC_DIR).tmp" --no-audit --no-fund --loglevel=error && \
	rm -rf "$(HTTPYAC_DIR)" && mv "$(HTTPYAC_DIR).tmp" "$(HTTPYAC_DIR)"

sysroot:
	@sudo=""; [ "$$(id -u)" = 0 ] || [ -e "$(SYSROOT)/.complete" ] || sudo=sudo; \
	$$sudo lab/sysroot/build.sh "$(SYSROOT)"

vet:
	@unformatted=$$(gofmt -l $(MODULES)); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change: $$unformatted"; exit 1; fi
	$(GO) vet $(PACKAGES)

fmt:
	gofmt -w $(MODULES)

clean:
	rm -rf .lab

# deps installs what the native lab runs on, and iptables, with which the
# fault suite cuts a cluster's node off from the others. Debian's packages start system
# services on install (rabbitmq on 5672, nginx on 80); the lab runs its own
# instances, so the ones this target installed are stopped and disabled again.
deps:
	@missing=""; \
	[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || command -v rabbitmq-server >/dev/null 2>&1 || missing="$$missing rabbitmq-server"; \
	command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	command -v iptables >/dev/null 2>&1 || [ -x /usr/sbin/iptables ] || missing="$$missing iptables"; \
	[ -z "$$missing" ] && exit 0; \
	if ! command -v apt-get >/dev/null 2>&1; then \
		echo "The lab needs$$missing. Install them with your system's package manager (RabbitMQ 3.10+ and nginx 1.22+), then run make again." >&2; \
		exit 1; \
	fi; \
	sudo=""; \
	if [ "$$(id -u)" != 0 ]; then \
		command -v sudo >/dev/null 2>&1 || { echo "Installing$$missing needs root: run 'apt-get install$$missing' as root, then make again." >&2; exit 1; }; \
		sudo="sudo"; \
	fi; \
	echo "Installing$$missing from the distribution's packages..."; \
	$$sudo apt-get update -qq && \
	DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing >/dev/null || exit 1; \
	if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then \
		for svc in $$missing; do \
			$$sudo systemctl disable --now "$$svc" >/dev/null 2>&1 && echo "Stopped the system $$svc service the package started; the lab runs its own."; \
		done; \
	fi; \
	true

# bench measures the lab beside its ceilings (docs/reference/benchmarks.md
# says what each row means) on a lab of its own, on free ports, and writes
# the results to docs/reference/benchmarks.md. BENCHFLAGS passes options,
# e.g. make bench BENCHFLAGS='-queue-types quorum'.
BENCHFLAGS ?=
.PHONY: bench
bench: deps
	@$(GO) build -o .lab/bin/lab ./lab
	@.lab/bin/lab bench $(BENCHFLAGS)

# fault runs the fault scenarios (docs/reference/delivery-guarantees.md) on a
# lab of its own, on free ports, and prints the table; make test runs them
# too, as the lab/fault test. SCENARIOS picks some, e.g.
# make fault SCENARIOS='broker-kill poison'.
SCENARIOS ?=
.PHONY: fault
fault: deps
	@$(GO) build -o .lab/bin/lab ./lab
	@.lab/bin/lab fault $(SCENARIOS)

# test-docker runs the lab as docker-compose.yml does, on a real Docker
# engine: docker compose up -d --build --wait on free ports under a project
# name of its own, tests through the published gateway, docker compose down
# -v at the end (lab/dockertest); then every tutorial chapter's Docker road,
# each on a compose project of its own (lab/doctest). Images the engine
# cannot pull are built as stand-ins from the sysroot's Debian packages, and
# it says so.
.PHONY: test-docker docker-deps docker-standins
test-docker: docker-standins
	LAB_SYSROOT=$(SYSROOT) $(GO) test -tags docker -count=1 -timeout 30m $(TESTFLAGS) ./lab/dockertest/
	LAB_SYSROOT=$(SYSROOT) $(GO) test -tags docker -count=1 -timeout 30m -run '^TestDockerTutorials$$' $(TESTFLAGS) ./lab/doctest/

# docker-deps installs a Docker engine (Debian's docker.io) when there is
# none, Compose v2 from the sysroot when `docker compose` is missing (Debian
# 12 has only v1), and starts dockerd when nothing answers on its socket and
# no service manager runs it (a container, CI).
# docker-standins: the images the compose files name, built from Debian's
# packages where they cannot be pulled (lab/dockertest/standins.sh).
docker-standins: docker-deps sysroot
	@lab/dockertest/standins.sh "$(SYSROOT)"

docker-deps: sysroot
	@sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	if ! command -v dockerd >/dev/null 2>&1 && ! docker info >/dev/null 2>&1; then \
		echo "Installing Docker (docker.io) from the distribution's packages..."; \
		$$sudo apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends docker.io >/dev/null || exit 1; \
	fi; \
	if ! docker compose version >/dev/null 2>&1; then \
		echo "Installing Compose v2 (docker compose) from $(SYSROOT)..."; \
		$$sudo install -D -m 0755 "$(SYSROOT)/usr/libexec/docker/cli-plugins/docker-compose" \
			/usr/local/lib/docker/cli-plugins/docker-compose || exit 1; \
	fi; \
	if ! $$sudo docker info >/dev/null 2>&1; then \
		echo "Starting dockerd (log: /var/log/lab-dockerd.log)..."; \
		$$sudo sh -c 'nohup dockerd >/var/log/lab-dockerd.log 2>&1 &'; \
		for i in $$(seq 60); do $$sudo docker info >/dev/null 2>&1 && exit 0; sleep 1; done; \
		echo "dockerd did not answer within 60 s; see /var/log/lab-dockerd.log" >&2; exit 1; \
	fi
