#!/usr/bin/env bash
# Benchmark: the first sync of a static marketing list against the sandbox, for each list size
# given (default 10,000, 50,000 and 100,000 contacts), so that flat memory shows. Release build.
# Each size runs in a fresh process with fresh simulators. Fails when any run misses a target or
# leaves the group wrong. The contacts and members are seeded with the simulator's bulk control
# (1,000,000 in well under two minutes); the simulator's paging makes the sync itself take a few
# minutes at a million.
set -euo pipefail
cd "$(dirname "$0")/../.."
CARGO=${CARGO:-cargo}
# Numbers are list sizes; everything from the first flag on goes to each run (e.g.
# `100000 --latency-ms 300 --timeout-s 120`).
sizes=()
while [ $# -gt 0 ] && [[ $1 != --* ]]; do
  sizes+=("$1")
  shift
done
if [ ${#sizes[@]} -eq 0 ]; then
  sizes=(10000 50000 100000)
fi
status=0
for n in "${sizes[@]}"; do
  echo "== $n contacts"
  # shellcheck disable=SC2086 # CARGO_FLAGS holds several flags or none
  $CARGO run --release -q -p sandbox --bin bench-first-sync ${CARGO_FLAGS:-} -- --contacts "$n" "$@" || status=1
  echo
done
exit $status
