# CleverReach connector: the front door. CI (.ci/run) calls the same targets.
SHELL := /bin/bash
CARGO ?= cargo
CARGO_FLAGS ?= --locked
FUNCTIONS := webhook-intake sync-marketing-list sync-contact sync-lead sync-account sublist-fanout sublist-update

.PHONY: help demo up test lint fmt check-domain bench bench-first-sync bench-retroactive sandbox clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

demo: ## run the connector locally against the sandbox: demo data, webhooks, changes, converged groups
	$(CARGO) run -p sandbox --bin local $(CARGO_FLAGS) -- demo

up: ## the connector and sandbox in the foreground (ports 8801/8802/8803) for hands-on use
	$(CARGO) run -p sandbox --bin local $(CARGO_FLAGS) -- up

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

bench-retroactive: ## benchmark (release build): retroactive sync of 100,000 contacts, sandbox answering after 50 ms ($$batch count, longest invocation, peak RSS, wall time)
	$(CARGO) run --release -p sandbox --bin bench-retroactive $(CARGO_FLAGS) -- --contacts 100000 --latency-ms 50

sandbox: ## only the Dataverse and CleverReach simulators, in the foreground
	$(CARGO) run -p sandbox --bin sandbox $(CARGO_FLAGS)

clean:
	$(CARGO) clean
