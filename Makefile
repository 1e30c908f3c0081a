# CleverReach connector: the front door. CI (.ci/run) calls the same targets.
SHELL := /bin/bash
CARGO ?= cargo
CARGO_FLAGS ?= --locked
FUNCTIONS := webhook-intake sync-marketing-list sync-contact sync-lead sync-account resync

.PHONY: help demo up resync test lint fmt check-domain bench bench-first-sync bench-resync sandbox clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

demo: ## run the connector locally against the sandbox: demo data, webhooks, changes, converged groups
	$(CARGO) run -p sandbox --bin local $(CARGO_FLAGS) -- demo

up: ## the connector and sandbox in the foreground (ports 8801/8802/8803) for hands-on use
	$(CARGO) run -p sandbox --bin local $(CARGO_FLAGS) -- up

resync: ## queue a full reconcile of every synced source in a running `make up` (KIND=list|campaign|campaignactivity to limit)
	$(CARGO) run -q -p sandbox --bin local $(CARGO_FLAGS) -- resync $(KIND)

test: check-domain ## every test (unit, handler, sandbox, end to end; an AWS emulator is started if none is set)
	tests/with-aws-emulator.sh $(CARGO) test --workspace $(CARGO_FLAGS)

lint: ## formatting and clippy, warnings are errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets $(CARGO_FLAGS) -- -D warnings

fmt: ## format the code
	$(CARGO) fmt --all

check-domain: ## prove the domain compiles without HTTP or AWS crates
	$(CARGO) check -p shared --no-default-features $(CARGO_FLAGS)

bench: ## benchmarks (release build): the reconcile planner
	$(CARGO) bench -p shared --bench planner $(CARGO_FLAGS)

bench-first-sync: ## benchmark (release build): first sync of static lists of 10k/50k/100k contacts against the sandbox (~40 min, mostly seeding)
	CARGO="$(CARGO)" CARGO_FLAGS="$(CARGO_FLAGS)" tests/bench/first-sync.sh

bench-resync: ## benchmark (release build): full resync of a campaign of 100k recipients across two overlapping lists, from an empty group and from one in step with drift
	CARGO="$(CARGO)" CARGO_FLAGS="$(CARGO_FLAGS)" tests/bench/resync.sh

sandbox: ## only the Dataverse and CleverReach simulators, in the foreground
	$(CARGO) run -p sandbox --bin sandbox $(CARGO_FLAGS)

clean:
	$(CARGO) clean
