# mabel: write Mabel's breaths to a local three-member replica set, then break it.
#
#   make run        start the set if needed, run mabel with its spool in data/ (ARGS="...")
#   make sim-up     what `run` starts when no Docker engine answers: mabel-sim, a simulated set
#   make failover   kill the primary, in another terminal, while mabel runs
#   make revive     start the killed member again
#   make partition  cut the primary off from the others, mabel still reaching it (simulator)
#   make heal       end the partition
#   make down       stop the set: the simulator, or the compose set
#   make test       formatting, clippy and the test suite (what CI runs)
#   make bench      every bench-* target: results in benches/results.md, charts in benches/*.svg
#   make demo       the seed's story in one go: write, fail over, revive, partition, audit
#   make test-real  the integration tests against the compose set instead of the fake
#
# up, down, clean, status, failover, revive, stepdown, partition, heal and demo act on the
# simulator while its pid file names a live process, else on the compose set. up, run and
# demo start the simulator when no Docker engine answers, and nothing on that path needs Docker.

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
# Where the simulator keeps its pid, its event log and its control socket, and mabel its spool.
DATA ?= data
# Where mabel keeps breaths until the set has them; `make run SPOOL=` runs without a spool.
SPOOL ?= $(DATA)/spool
# The simulator's ports on 127.0.0.1 (the compose set's, so mabel's default URI reaches it)
# and its election timeout: mongod's 10s, which `ELECTION_TIMEOUT=2s` shortens for a quick
# look (heartbeats and the heartbeat timeout scale with it).
PORTS ?= 27017,27018,27019
ELECTION_TIMEOUT ?= 10s
# The cargo profile built for the simulator's targets: release, or dev for the tests, whose
# binaries `cargo test` has just built.
PROFILE ?= release
BIN := target/$(if $(filter dev,$(PROFILE)),debug,$(PROFILE))
MABEL ?= $(BIN)/mabel
SIM ?= $(BIN)/mabel-sim
SIM_PID := $(DATA)/sim.pid
SIM_LOG := $(DATA)/sim.log
SIM_CTL = $(SIM) ctl --control $(DATA)/sim.sock
comma := ,
SIM_URI := mongodb://127.0.0.1:$(subst $(comma),$(comma)127.0.0.1:,$(PORTS))/?replicaSet=rs0
# Seconds between the steps of `make demo` on the simulator.
DEMO_PAUSE ?= 5
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
			"(Docker Desktop, or 'sudo systemctl start docker'), or 'make run' uses the simulator" >&2; \
		exit 1; \
	fi

# Whether a Docker engine answers Compose, without a word: `run` and `demo` choose by it.
ENGINE_ANSWERS = { [ -n '$(COMPOSE)' ] && $(COMPOSE) ps >/dev/null 2>&1; }

# live PID: the process runs. Where no init reaps orphans, a simulator that has exited
# lingers as a zombie, which `kill -0` still finds, so its state is read too: from /proc,
# else from ps.
LIVE = live() { \
	kill -0 "$$1" 2>/dev/null && \
	case "$$( { sed 's/.*) //' "/proc/$$1/stat" || ps -o stat= -p "$$1"; } 2>/dev/null | tr -d ' ')" in \
		Z*|X*) false;; \
	esac; \
}
SIM_RUNNING = { [ -f '$(SIM_PID)' ] && live "$$(cat '$(SIM_PID)')"; }

# The set the targets below act on: `sim` while the simulator's pid file names a live
# process, else `compose`.
ON := $(shell $(LIVE); if $(SIM_RUNNING); then echo sim; else echo compose; fi)

SET_TARGETS := up down clean status failover stepdown revive partition heal
.PHONY: help run demo test test-real lint fmt bench $(BENCHES) $(SET_TARGETS) \
	$(addprefix compose-,run demo $(SET_TARGETS)) \
	$(addprefix sim-,build run demo $(SET_TARGETS)) auto-run auto-demo auto-up

help:
	@sed -n 's/^#   make /  make /p' $(firstword $(MAKEFILE_LIST))
	@echo "  also: up, clean (down, and delete the set's data; the spool stays), status, stepdown, lint, fmt,"
	@echo "        $(BENCHES) (one benchmark each)"

$(filter-out up,$(SET_TARGETS)): %: $(ON)-%

# As `run`: the compose set when a Docker engine answers, else the simulator.
up: $(if $(filter sim,$(ON)),sim-up,auto-up)

auto-up:
	@if $(ENGINE_ANSWERS); then exec $(MAKE) --no-print-directory compose-up; fi; \
	echo "no Docker engine answers: starting mabel-sim, a simulated replica set (not MongoDB); start Docker for the real one"; \
	exec $(MAKE) --no-print-directory sim-up

# With no simulator running: the compose set when a Docker engine answers, else the
# simulator, started in the background and left running (make down stops it). `STARTS=sim-up`
# makes the simulator a prerequisite of sim-run and sim-demo, so that one make builds once
# and starts it first.
run: $(if $(filter sim,$(ON)),sim-run,auto-run)

auto-run:
	@if $(ENGINE_ANSWERS); then exec $(MAKE) --no-print-directory compose-run; fi; \
	echo "no Docker engine answers: running against mabel-sim, a simulated replica set (not MongoDB); start Docker for the real one"; \
	exec $(MAKE) --no-print-directory sim-run STARTS=sim-up

compose-run: compose-up
	$(if $(SPOOL),mkdir -p $(dir $(SPOOL)))
	cargo run --release -- run $(if $(SPOOL),--spool $(SPOOL)) $(ARGS)

# The seed's story, scripted: mabel writes a breath a second in the background, the primary
# is killed after 10 s and started again 20 s later, mabel is stopped with SIGINT (it finishes
# the breath in flight and prints a summary), and the audit checks what this run stored.
# One shell, so that it can wait for mabel; no $(MAKE) in it, so that `make -n compose-demo`
# only prints it.
compose-demo: compose-up
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

compose-up:
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

# With no simulator running and no Docker engine answering, nothing runs that could be
# stopped: say so and succeed, instead of Compose's traceback.
STOP_COMPOSE = \
	if $(ENGINE_ANSWERS); then echo '$(1)'; $(1); \
	else echo "nothing to stop: mabel-sim is not running and no Docker engine answers"; fi

compose-down:
	@$(call STOP_COMPOSE,$(COMPOSE) down)

compose-clean:
	@$(call STOP_COMPOSE,$(COMPOSE) down -v)

compose-status:
	@$(NEED_COMPOSE)
	@$(SET_FUNCS); \
	for svc in mongo1 mongo2 mongo3; do \
		msh $$svc 'rs.status().members.forEach(m => print(m.name + "  " + m.stateStr))' 2>/dev/null \
			&& exit 0; \
	done; \
	echo "no member answers; is the set up? (make up)" >&2; \
	exit 1

compose-failover:
	@$(NEED_COMPOSE)
	@$(SET_FUNCS); \
	p=$$(primary) || { echo "no primary found; is the set up? (make up)" >&2; exit 1; }; \
	echo "killing $$p, the primary (make revive starts it again)"; \
	$(COMPOSE) kill $$p

# replSetStepDown makes the primary ineligible for 10 s; older servers close the shell's
# connection when they step down, so the result is judged by who is primary afterwards.
compose-stepdown:
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

compose-revive:
	@$(NEED_COMPOSE)
	$(COMPOSE) start $(MEMBERS)

# The compose set's three mongod share one network namespace, so nothing cuts one member off
# from the others while this machine still reaches it.
compose-partition compose-heal:
	@echo "make: the compose set cannot cut its primary off from the others while mabel" \
		"still reaches it (its mongod share one network namespace); $(@:compose-%=%) works" \
		"on the simulator" >&2; \
	exit 1

# The simulator: mabel-sim, a simulated replica set (not MongoDB), in the background on
# $(PORTS), its pid in $(SIM_PID), its events in $(SIM_LOG), steered through its control
# socket. Nothing here needs Docker.
sim-build:
	cargo build --profile $(PROFILE) --workspace --bins

sim-up: sim-build
	@mkdir -p $(DATA); $(LIVE); \
	if $(SIM_RUNNING); then echo "mabel-sim is running (pid $$(cat $(SIM_PID)))"; exit 0; fi; \
	nohup $(SIM) --ports $(PORTS) --election-timeout $(ELECTION_TIMEOUT) \
		--control $(DATA)/sim.sock </dev/null >$(SIM_LOG) 2>&1 & pid=$$!; \
	echo $$pid >$(SIM_PID); \
	tries=0; until $(SIM_CTL) status >/dev/null 2>&1; do \
		if ! live $$pid || [ $$tries -ge 100 ]; then \
			kill $$pid 2>/dev/null; rm -f $(SIM_PID); cat $(SIM_LOG) >&2; exit 1; \
		fi; \
		tries=$$((tries + 1)); sleep 0.1; \
	done; \
	echo "mabel-sim (pid $$pid): a simulated replica set (not MongoDB) on $(SIM_URI)," \
		"election timeout $(ELECTION_TIMEOUT); its events: tail -f $(SIM_LOG)"

sim-run: sim-build $(STARTS)
	$(if $(SPOOL),mkdir -p $(dir $(SPOOL)))
	MONGODB_URI='$(SIM_URI)' $(MABEL) run $(if $(SPOOL),--spool $(SPOOL)) $(ARGS)

# `quit` through the socket, else SIGTERM, else SIGKILL: no process is left behind.
sim-down:
	@$(LIVE); pid=$$(cat $(SIM_PID) 2>/dev/null); \
	if [ -z "$$pid" ]; then echo "mabel-sim is not running"; exit 0; fi; \
	$(SIM_CTL) quit >/dev/null 2>&1 || kill $$pid 2>/dev/null; \
	tries=0; while live $$pid; do \
		tries=$$((tries + 1)); \
		if [ $$tries -eq 50 ]; then kill -KILL $$pid 2>/dev/null; fi; \
		if [ $$tries -ge 100 ]; then echo "mabel-sim (pid $$pid) does not stop" >&2; exit 1; fi; \
		sleep 0.1; \
	done; \
	rm -f $(SIM_PID); \
	echo "mabel-sim (pid $$pid) stopped; the set's data is gone"

# Its data is in memory: down deletes it.
sim-clean: sim-down

sim-status:
	@$(SIM_CTL) status

sim-failover:
	@$(SIM_CTL) kill primary && echo "the others elect a new primary after the election timeout;" \
		"make revive starts it again"

sim-revive:
	@$(SIM_CTL) revive all

sim-stepdown:
	@$(SIM_CTL) stepdown

sim-partition:
	@$(SIM_CTL) isolate primary && echo "the others elect one of their own after the election" \
		"timeout, and the primary steps down; make heal ends the partition"

sim-heal:
	@$(SIM_CTL) heal all

# The seed's story on the simulator, unattended and on its own timers: mabel writes a breath
# a second; the primary is killed and the others elect by themselves an election timeout
# later; it is started again; the new primary is cut off from the others while mabel still
# reaches it, the others elect, and when the partition heals it rolls back the breath only it
# held, which mabel wrote again on the new primary (w: "majority"); mabel is stopped with
# SIGINT, and the audit checks the breaths of this run. Its exit code is the audit's. mabel's
# lines are stamped as they arrive (its warnings keep their own time) and printed with the
# simulator's events, in time order.
#   status_has RE     the simulator's status has a line matching RE
#   primary           the member that is primary of the newest term
#   wait_for WHAT RE  waits up to $(PRIMARY_WAIT) s for a status line matching RE
#   stop WHY          stops mabel and the demo, saying why
demo: $(if $(filter sim,$(ON)),sim-demo,auto-demo)

auto-demo:
	@if $(ENGINE_ANSWERS); then exec $(MAKE) --no-print-directory compose-demo; fi; \
	echo "no Docker engine answers: the demo runs on mabel-sim, a simulated replica set (not MongoDB)"; \
	status=0; $(MAKE) --no-print-directory sim-demo STARTS=sim-up || status=$$?; \
	$(LIVE); if $(SIM_RUNNING); then $(MAKE) --no-print-directory sim-down; fi; \
	exit $$status

sim-demo: sim-build $(STARTS)
	@status_has() { $(SIM_CTL) status | grep -q "$$1"; }; \
	primary() { $(SIM_CTL) status | sed -n 's/^member \([0-9]\) (.*) PRIMARY.*, term \([0-9]*\),.*/\2 \1/p' \
		| sort -n | tail -1 | cut -d' ' -f2; }; \
	wait_for() { \
		deadline=$$(( $$(date +%s) + $(PRIMARY_WAIT) )); \
		until status_has "$$2"; do \
			if [ "$$(date +%s)" -ge "$$deadline" ]; then stop "no $$1 after $(PRIMARY_WAIT) s"; fi; \
			sleep 0.2; \
		done; \
	}; \
	stop() { echo "make demo: $$1" >&2; kill -INT $$mabel; wait $$mabel; exit 1; }; \
	mkdir -p $(DATA); \
	since=$$(date -u +%Y-%m-%dT%H:%M:%S.000Z); \
	fifo=$(DATA)/demo.fifo; rm -f $$fifo; mkfifo $$fifo; \
	$(SIM) stamp mabel <$$fifo >$(DEMO_LOG) & stamp=$$!; \
	MONGODB_URI='$(SIM_URI)' $(MABEL) run --interval 1 >$$fifo 2>&1 & mabel=$$!; \
	echo "mabel is writing (pid $$mabel, output in $(DEMO_LOG)); the primary dies in $(DEMO_PAUSE) s"; \
	sleep $(DEMO_PAUSE); \
	old=$$(primary); \
	$(SIM_CTL) kill $$old || stop "no primary to kill"; \
	echo "member $$old was the primary; the others elect a new one by themselves, an election" \
		"timeout ($(ELECTION_TIMEOUT)) after they last heard from it"; \
	wait_for "new primary" "^member [^$$old] .* PRIMARY, term"; \
	sleep $(DEMO_PAUSE); \
	$(SIM_CTL) revive $$old; \
	wait_for "member $$old back" "^member $$old .* SECONDARY"; \
	sleep $(DEMO_PAUSE); \
	cut=$$(primary); \
	$(SIM_CTL) isolate $$cut || stop "no primary to cut off"; \
	echo "member $$cut is the primary; the others elect one of their own, and it steps down," \
		"an election timeout from now; mabel's next breath waits on it for a majority"; \
	wait_for "step-down of member $$cut" "^member $$cut .* SECONDARY"; \
	wait_for "new primary" "^member [^$$cut] .* PRIMARY, term"; \
	sleep $(DEMO_PAUSE); \
	$(SIM_CTL) heal all; \
	wait_for "member $$cut caught up" "^member $$cut .* SECONDARY"; \
	sleep $(DEMO_PAUSE); \
	echo "stopping mabel with SIGINT"; \
	kill -INT $$mabel; \
	status=0; wait $$mabel || status=$$?; wait $$stamp; rm -f $$fifo; \
	echo "== mabel and the simulated set, in time order"; \
	awk -v since="$$since" '/^[0-9][0-9][0-9][0-9]-/ && $$1 >= since' $(SIM_LOG) \
		| sort -s -k1,1 - $(DEMO_LOG); \
	echo "mabel exited with $$status"; \
	MONGODB_URI='$(SIM_URI)' $(MABEL) audit --since $$since

test: lint
	cargo test --workspace

# The integration tests against the compose set: MABEL_TEST_URI points them at it, COMPOSE
# lets them kill, start and pause members. One test at a time, since they share one set.
# Tests that need what only the fake can do print "skipped: <test>: <reason>"; the list of
# those and the tally of the rest end the output.
TEST_URI ?= mongodb://127.0.0.1:27017,127.0.0.1:27018,127.0.0.1:27019/?replicaSet=rs0&heartbeatFrequencyMS=500
test-real: compose-up
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
