# CleverReach connector: the front door. CI (.ci/run) calls the same targets.
SHELL := /bin/bash
CARGO ?= cargo
CARGO_FLAGS ?= --locked
FUNCTIONS := webhook-intake sync-marketing-list sync-contact sync-lead sync-account sync-campaign sync-campaign-activity receiver-state-sync lead-sync connect resync sublist-fanout sublist-update

VENV ?= .venv
# Pinned Python tools for the deployable (toolchain.md): SAM template lint and cargo-lambda.
PY_TOOLS := 'cfn-lint==1.58.0' 'aws-sam-translator==1.115.0' 'cargo-lambda==1.9.2'
# Microsoft's Python Dataverse client and its dependencies (pinned) for the conformance suite.
CONFORMANCE_REQUIREMENTS := tests/conformance/requirements.txt
CONFORMANCE_PYTHON = $(abspath $(VENV))/bin/python

.PHONY: help demo up resync test lint fmt check-domain bench bench-first-sync bench-resync bench-consent bench-person-change bench-retroactive sandbox clean build lint-infra tools conformance-tools conformance receiver-state-sync lead-sync

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

demo: ## run the connector locally against the sandbox: demo data, webhooks, changes, converged groups
	$(CARGO) run -p sandbox --bin local $(CARGO_FLAGS) -- demo

up: ## the connector and sandbox in the foreground (ports 8801/8802/8803) for hands-on use
	$(CARGO) run -p sandbox --bin local $(CARGO_FLAGS) -- up

receiver-state-sync: ## run the unsubscribe/bounce back-flow once against a running `make up`
	$(CARGO) run -p sandbox --bin local $(CARGO_FLAGS) -- run-job receiver-state-sync

lead-sync: ## run the sign-up → lead back-flow once against a running `make up`
	$(CARGO) run -p sandbox --bin local $(CARGO_FLAGS) -- run-job lead-sync

resync: ## queue a full reconcile of every synced source in a running `make up` (KIND=list|campaign|campaignactivity to limit)
	$(CARGO) run -q -p sandbox --bin local $(CARGO_FLAGS) -- resync $(KIND)

test: check-domain conformance-tools ## every test (unit, handler, sandbox, end to end, the Dataverse conformance suite; an AWS emulator is started if none is set)
	@tests/browser-check.sh
	DATAVERSE_CONFORMANCE_PYTHON=$(CONFORMANCE_PYTHON) tests/with-aws-emulator.sh $(CARGO) test --workspace $(CARGO_FLAGS)
	@tests/browser-check.sh

lint: ## formatting and clippy, warnings are errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets $(CARGO_FLAGS) -- -D warnings
	$(CARGO) clippy -p sandbox --features localstack --bin aws-emulator $(CARGO_FLAGS) -- -D warnings

fmt: ## format the code
	$(CARGO) fmt --all

check-domain: ## prove the domain compiles without HTTP or AWS crates
	$(CARGO) check -p shared --no-default-features $(CARGO_FLAGS)

bench: ## benchmarks (release build): the reconcile planner
	$(CARGO) bench -p shared --bench planner $(CARGO_FLAGS)

bench-first-sync: ## benchmark (release build): first sync of static lists of 10k/50k/100k contacts against the sandbox (a few minutes); ARGS="100000 --latency-ms 300 --timeout-s 120" for one size at real latency
	CARGO="$(CARGO)" CARGO_FLAGS="$(CARGO_FLAGS)" tests/bench/first-sync.sh $(ARGS)

bench-resync: ## benchmark (release build): full resync of a campaign of 100k recipients across two overlapping lists, from an empty group and from one in step with drift
	CARGO="$(CARGO)" CARGO_FLAGS="$(CARGO_FLAGS)" tests/bench/resync.sh $(ARGS)

bench-consent: ## benchmark (release build): 100 unsubscribes through the event hooks to the CRM, simulators answering after 300 ms (p50/p99, calls per event)
	$(CARGO) run --release -p sandbox --bin bench-consent $(CARGO_FLAGS) -- --events 100 --latency-ms 300 --every-ms 500 --workers 5

bench-person-change: ## benchmark (release build): 100 contact changes through the Web API to CleverReach, simulators answering after 100 ms (p50/p99, Dataverse and CleverReach requests per change)
	$(CARGO) run --release -p sandbox --bin bench-person-change $(CARGO_FLAGS) -- --changes 100 --latency-ms 100 --every-ms 250 --workers 5

bench-retroactive: ## benchmark (release build): retroactive sync of 100,000 contacts, sandbox answering after 50 ms ($$batch count, longest invocation, peak RSS, wall time)
	$(CARGO) run --release -p sandbox --bin bench-retroactive $(CARGO_FLAGS) -- --contacts 100000 --latency-ms 50

sandbox: ## only the Dataverse and CleverReach simulators, in the foreground
	$(CARGO) run -p sandbox --bin sandbox $(CARGO_FLAGS)

conformance: conformance-tools ## the Dataverse simulator's conformance suite alone: Microsoft's Python client through a local TLS front
	DATAVERSE_CONFORMANCE_PYTHON=$(CONFORMANCE_PYTHON) REQUIRE_CONFORMANCE=1 $(CARGO) test -p sandbox --test it $(CARGO_FLAGS) dataverse_conformance:: -- --nocapture

clean:
	$(CARGO) clean

tools: $(VENV)/.deploy-tools ## cfn-lint, aws-sam-translator and cargo-lambda (pinned) into $(VENV)

$(VENV)/.deploy-tools:
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q $(PY_TOOLS)
	touch $@

conformance-tools: $(VENV)/.dataverse-client ## Microsoft's Python Dataverse client (pinned, tests/conformance/requirements.txt) into $(VENV)

$(VENV)/.dataverse-client: $(CONFORMANCE_REQUIREMENTS)
	test -x $(VENV)/bin/python || python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -r $(CONFORMANCE_REQUIREMENTS)
	touch $@

build: tools ## every function for Lambda (arm64, release) with cargo-lambda: target/lambda/<fn>/bootstrap (~10-25 min cold on 2 cores)
	rustup target list --installed | grep -q '^aarch64-unknown-linux-gnu$$' || rustup target add aarch64-unknown-linux-gnu
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(CARGO) lambda build --release --arm64 $(CARGO_FLAGS) $(addprefix -p ,$(FUNCTIONS))
	@for f in $(FUNCTIONS); do printf '%-26s %s bytes\n' "$$f" "$$(stat -c %s target/lambda/$$f/bootstrap)"; done

lint-infra: tools ## cfn-lint the SAM template, as written and as translated by aws-sam-translator
	VENV=$(VENV) infra/lint.sh
