#!/usr/bin/env bash
# Says loudly when the browser tests (the connect page in headless Chromium) cannot run here:
# they then skip themselves, and a green `make test` would not cover the page. CI sets
# REQUIRE_BROWSER=1, which makes a missing Chromium a failure instead.
for program in chromium chromium-browser google-chrome; do
  command -v "$program" >/dev/null 2>&1 && exit 0
done
cat >&2 <<'MSG'

!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
!!  No Chromium on this machine: the browser tests (connect page, checklist control) are   !!
!!  SKIPPED in this run. Install it with `apt-get install chromium` to run them.           !!
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!

MSG
