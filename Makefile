# mabel: write Mabel's breaths to a local three-member replica set, then break it.
#
#   make run        start the set if needed, run mabel with its spool in data/ (ARGS="...")
#   make failover   kill the primary's container, in another terminal, while mabel runs
#   make revive     start the killed member again
#   make test       formatting, clippy and the test suite (what CI runs)
#   make bench      every bench-* target: results in benches/results.md, charts in benches/*.svg
#   make demo       the seed's story in one go: write, fail over, revive, stop, audit
#   make test-real  the integration tests against the compose set instead of the fake

# Compose: the `docker compose` plugin if it answers, else docker-compose; found once, here.
# `make up COMPOSE="podman compose"` chooses another.
ifndef COMPOSE
COMPOSE := $(shell if docker compose version >/dev/null 2>&1; then echo docker compose; \
	elif command -v docker-compose >/dev/null 2>&1; then echo docker-compose; fi)
endif
# The members, in port order; `net`, which holds their network, is never killed or started.
MEMBERS := mongo1 mongo2 mongo3
ARGS ?=
# Where `make demo` keeps mabel's output.
DEMO_LOG ?= demo.log
MABEL ?= target/release/mabel
# Where mabel keeps breaths until the set has them; `make run SPOOL=` runs without a spool.
SPOOL ?= data/spool
# Seconds `up` (and so `run`) waits for the set to have a primary.
PRIMARY_WAIT ?= 60
# The benchmarks `make bench` runs, one after the other; add a new bench-<name> target here.
BENCHES := bench-failover bench-footprint bench-audit bench-spool bench-catchup

# Shell functions shared by the recipes that talk to the set (each recipe is one shell):
#   port SERVICE         the port that service's mongod listens on
#   msh SERVICE JS       evaluate JS with mongosh inside SERVICE (fails if it isn't running)
#   primary              print the service whose mongod says it is the writable primary;
#                        fail if none does
SET_FUNCS = \
	port() { case "$$1" in mongo1) echo 27017;; mongo2) echo 27018;; mongo3) echo 27019;; esac; }; \
	msh() { $(COMPOSE) exec -T "$$1" mongosh --quiet --port "$$(port "$$1")" --eval "$$2"; }; \
	primary() { \
		for svc in mongo1 mongo2 mongo3; do \
			if [ "$$(msh $$svc 'db.hello().isWritablePrimary' 2>/dev/null)" = true ]; then \
				echo $$svc; return 0; \
			fi; \
		done; \
		return 1; \
	}

# Stops a recipe with one line when Compose or a Docker engine is missing, instead of
# whatever a docker without the compose plugin says ("unknown shorthand flag: 'd' in -d").
NEED_COMPOSE = \
	if [ -z '$(COMPOSE)' ]; then \
		echo "make: Docker Compose not found: install the compose plugin ('docker compose'," \
			"https://docs.docker.com/compose/install/) or docker-compose" >&2; \
		exit 1; \
	fi; \
	if ! $(COMPOSE) ps >/dev/null 2>&1; then \
		echo "make: '$(COMPOSE) ps' failed: no Docker engine answers; start Docker" \
			"(Docker Desktop, or 'sudo systemctl start docker')" >&2; \
		exit 1; \
	fi

.PHONY: help run up down clean status failover stepdown revive test test-real lint fmt demo bench \
	$(BENCHES)

help:
	@sed -n 's/^#   make /  make /p' $(firstword $(MAKEFILE_LIST))
	@echo "  also: up, down, clean (down and delete the data), status, stepdown, lint, fmt,"
	@echo "        $(BENCHES) (one benchmark each)"

run: up
	$(if $(SPOOL),mkdir -p $(dir $(SPOOL)))
	cargo run --release -- run $(if $(SPOOL),--spool $(SPOOL)) $(ARGS)

# The seed's story, scripted: mabel writes a breath a second in the background, the primary
# is killed after 10 s and started again 20 s later, mabel is stopped with SIGINT (it finishes
# the breath in flight and prints a summary), and the audit checks what this run stored.
# One shell, so that it can wait for mabel; no $(MAKE) in it, so that `make -n demo` only
# prints it.
demo: up
	cargo build --release
	@$(SET_FUNCS); \
	since=$$(date -u +%Y-%m-%dT%H:%M:%SZ); \
	$(MABEL) run --interval 1 >$(DEMO_LOG) 2>&1 & mabel=$$!; \
	echo "mabel is writing (pid $$mabel, output in $(DEMO_LOG)); the primary dies in 10 s"; \
	sleep 10; \
	p=$$(primary) || { echo "no primary found" >&2; kill -INT $$mabel; exit 1; }; \
	echo "killing $$p, the primary; it comes back in 20 s"; \
	$(COMPOSE) kill $$p; \
	sleep 20; \
	$(COMPOSE) start $(MEMBERS); \
	sleep 5; \
	echo "stopping mabel with SIGINT"; \
	kill -INT $$mabel; \
	status=0; wait $$mabel || status=$$?; \
	cat $(DEMO_LOG); \
	echo "mabel exited with $$status"; \
	$(MABEL) audit --since $$since

up:
	@$(NEED_COMPOSE)
	$(COMPOSE) up -d
	@$(SET_FUNCS); \
	echo "waiting up to $(PRIMARY_WAIT)s for a primary..."; \
	deadline=$$(( $$(date +%s) + $(PRIMARY_WAIT) )); \
	until p=$$(primary); do \
		if [ "$$(date +%s)" -ge "$$deadline" ]; then \
			echo "no primary after $(PRIMARY_WAIT)s; look at '$(COMPOSE) ps' and '$(COMPOSE) logs mongo1'" >&2; \
			exit 1; \
		fi; \
		sleep 2; \
	done; \
	echo "primary: $$p"

down:
	@$(NEED_COMPOSE)
	$(COMPOSE) down

clean:
	@$(NEED_COMPOSE)
	$(COMPOSE) down -v

status:
	@$(NEED_COMPOSE)
	@$(SET_FUNCS); \
	for svc in mongo1 mongo2 mongo3; do \
		msh $$svc 'rs.status().members.forEach(m => print(m.name + "  " + m.stateStr))' 2>/dev/null \
			&& exit 0; \
	done; \
	echo "no member answers; is the set up? (make up)" >&2; \
	exit 1

failover:
	@$(NEED_COMPOSE)
	@$(SET_FUNCS); \
	p=$$(primary) || { echo "no primary found; is the set up? (make up)" >&2; exit 1; }; \
	echo "killing $$p, the primary (make revive starts it again)"; \
	$(COMPOSE) kill $$p

# replSetStepDown makes the primary ineligible for 10 s; older servers close the shell's
# connection when they step down, so the result is judged by who is primary afterwards.
stepdown:
	@$(NEED_COMPOSE)
	@$(SET_FUNCS); \
	old=$$(primary) || { echo "no primary found; is the set up? (make up)" >&2; exit 1; }; \
	echo "asking $$old, the primary, to step down"; \
	msh $$old 'rs.stepDown(10, 5)' || true; \
	for i in 1 2 3 4 5 6 7 8 9 10; do \
		p=$$(primary) && [ "$$p" != "$$old" ] && { echo "primary: $$p"; exit 0; }; \
		sleep 2; \
	done; \
	echo "$$old did not hand over to another member within 20s" >&2; \
	exit 1

revive:
	@$(NEED_COMPOSE)
	$(COMPOSE) start $(MEMBERS)

test: lint
	cargo test --workspace

# The integration tests against the compose set: MABEL_TEST_URI points them at it, COMPOSE
# lets them kill, start and pause members. One test at a time, since they share one set.
# Tests that need what only the fake can do print "skipped: <test>: <reason>"; the list of
# those and the tally of the rest end the output.
TEST_URI ?= mongodb://127.0.0.1:27017,127.0.0.1:27018,127.0.0.1:27019/?replicaSet=rs0&heartbeatFrequencyMS=500
test-real: up
	@mkdir -p target; \
	{ MABEL_TEST_URI='$(TEST_URI)' COMPOSE='$(COMPOSE)' \
		cargo test --no-fail-fast --tests -- --test-threads=1 --nocapture 2>&1; echo $$? >target/test-real.status; } \
		| tee target/test-real.log; \
	echo "== skipped against the real set:"; \
	grep -o 'skipped: .*' target/test-real.log || echo "(none)"; \
	skipped=$$(grep -c 'skipped: ' target/test-real.log); \
	grep '^test result: ' target/test-real.log | awk -v skipped="$$skipped" \
		'{ passed += $$4; failed += $$6 } END { printf "== %d passed, %d failed, %d skipped (they need the fake)\n", passed - skipped, failed, skipped }'; \
	exit $$(cat target/test-real.status)

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

# Benchmarks, in the release (bench) profile, against the fake replica set: each prints its
# table and replaces its own section of benches/results.md. They time things, so they run one
# at a time even under -j.
bench: $(BENCHES)

.NOTPARALLEL: bench

bench-failover:
	cargo bench --bench failover

bench-footprint:
	cargo bench --bench footprint

# The release binary audits 100,000 then 1,000,000 breaths in the fake replica set:
# breaths per second, its CPU time and its peak memory. AUDIT_BREATHS=n changes the second size.
bench-audit:
	cargo bench --bench audit

# The spool's cost per breath: its two fdatasyncs on this disk, and whole runs with and
# without --spool against the fake set.
bench-spool:
	cargo bench --bench spool

# A minute's, an hour's and a day's backlog in the spool, written once the set returns, at 0
# and 5 ms per insert, in batches and one at a time: benches/results.md and benches/catchup.svg.
bench-catchup:
	cargo bench --bench catchup
