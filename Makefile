# CleverReach connector: the front door. CI (.ci/run) calls the same targets.
SHELL := /bin/bash
CARGO ?= cargo
CARGO_FLAGS ?= --locked

.PHONY: help test lint fmt check-domain bench sandbox clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

test: check-domain ## run every test (unit, handler, sandbox, end to end)
	$(CARGO) test --workspace $(CARGO_FLAGS)

lint: ## formatting and clippy, warnings are errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets $(CARGO_FLAGS) -- -D warnings

fmt: ## format the code
	$(CARGO) fmt --all

check-domain: ## prove the domain compiles without HTTP or AWS crates
	$(CARGO) check -p shared --no-default-features $(CARGO_FLAGS)

bench: ## benchmarks (release build): the reconcile planner
	$(CARGO) bench -p shared --bench planner $(CARGO_FLAGS)

sandbox: ## run the Dataverse and CleverReach simulators in the foreground
	$(CARGO) run -p sandbox --bin sandbox $(CARGO_FLAGS)

clean:
	$(CARGO) clean
