#!/usr/bin/env bash
# Lints the SAM template twice: as written (cfn-lint checks SAM resources against SAM's schema
# only), then translated to plain CloudFormation by aws-sam-translator (catches bad values in
# Serverless resources). Needs cfn-lint and aws-sam-translator: from $VENV (default .venv) or PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${VENV:-.venv}"
if [ -x "$venv/bin/cfn-lint" ]; then
  PATH="$PWD/$venv/bin:$PATH"
fi
python=python3
[ -x "$venv/bin/python" ] && python="$venv/bin/python"
if ! command -v cfn-lint >/dev/null || ! "$python" -c 'import samtranslator' 2>/dev/null; then
  echo "lint-infra: cfn-lint or aws-sam-translator missing; install them:" >&2
  echo "  python3 -m venv $venv && $venv/bin/pip install 'cfn-lint==1.58.0' 'aws-sam-translator==1.115.0'" >&2
  exit 2
fi
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
echo "alarms and dashboard generated from the template's queues and functions"
"$python" infra/monitoring.py --check infra/template.yaml
echo "cfn-lint infra/template.yaml"
cfn-lint infra/template.yaml
echo "aws-sam-translator -> cfn-lint (translated)"
"$python" infra/sam_translate.py infra/template.yaml "$out/translated.json"
cfn-lint "$out/translated.json"
echo "secrets per consumer (translated)"
"$python" infra/check_secrets.py --self-test "$out/translated.json"
"$python" infra/check_secrets.py "$out/translated.json"
echo "an alarm for every dead-letter queue, work queue and function (translated)"
"$python" infra/check_alarms.py --self-test "$out/translated.json"
"$python" infra/check_alarms.py "$out/translated.json"
echo "infra lint: clean"
