#!/usr/bin/env bash
# Benchmark: full resync of a campaign of 100,000 recipients across two overlapping static
# marketing lists (60,000 + 60,000 sharing 20,000) against the sandbox, release build: once from
# no group, once with the group in step plus drift. Arguments go to the binary (e.g.
# `--recipients 20000 --overlap 4000` for a quick run). Fails when a target is missed or the
# group ends up wrong.
set -euo pipefail
cd "$(dirname "$0")/../.."
CARGO=${CARGO:-cargo}
# shellcheck disable=SC2086 # CARGO_FLAGS holds several flags or none
exec $CARGO run --release -q -p sandbox --bin bench-resync ${CARGO_FLAGS:-} -- "$@"
