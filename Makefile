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

.PHONY: run test deps vet fmt clean help

help:
	@echo "make run    start the whole lab natively (PARTS='rabbitmq service01' for a subset)"
	@echo "make test   vet and test every module, with the real RabbitMQ and nginx"
	@echo "make deps   install rabbitmq-server and nginx when missing"
	@echo "make fault  run the fault scenarios and print what was lost or doubled (SCENARIOS='...')"
	@echo "make bench  measure the lab beside its ceilings (docs/reference/benchmarks.md)"
	@echo "make clean  remove the native lab's state (.lab/: broker data, logs, binaries)"

run: deps
	@$(GO) build -o .lab/bin/lab ./lab
	@.lab/bin/lab run $(PARTS)

test: deps vet
	$(GO) test -race -count=1 $(TESTFLAGS) $(addprefix ./,$(addsuffix /...,$(MODULES)))

vet:
	@unformatted=$$(gofmt -l $(MODULES)); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change: $$unformatted"; exit 1; fi
	$(GO) vet $(addprefix ./,$(addsuffix /...,$(MODULES)))

fmt:
	gofmt -w $(MODULES)

clean:
	rm -rf .lab

# deps installs what the native lab runs on. Debian's packages start system
# services on install (rabbitmq on 5672, nginx on 80); the lab runs its own
# instances, so the ones this target installed are stopped and disabled again.
deps:
	@missing=""; \
	[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || missing="$$missing rabbitmq-server"; \
	command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
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
