#!/usr/bin/env bash
# API fuzzing: schemathesis against the running server's own /openapi.json, every documented
# operation, with valid credentials (till Basic auth; the admin token for /x/perks). Fails on any
# 5xx or "Internal server error" outside the contract's documented all-items-failed answers
# (see fuzz/schemathesis_hooks.py).
#
# Usage: fuzz/api.sh [MAX_EXAMPLES]   (default 5: the CI short form; 50+ for a long run)
# Needs: the `perks` debug binary (cargo build), schemathesis (pip install schemathesis==4.32.5).
# Writes: $FUZZ_REPORT_DIR (default target dir's fuzz-report/) with the NDJSON reports.
set -euo pipefail
cd "$(dirname "$0")/.."

max_examples="${1:-5}"
target="${CARGO_TARGET_DIR:-target}"
binary="$target/debug/perks"
report_dir="${FUZZ_REPORT_DIR:-$target/fuzz-report}"
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"

PERKS_LOG=warn PERKS_RATE_LIMIT__ENABLED=false "$binary" \
    --database-url "sqlite://$work/perks.db" --listen "127.0.0.1:$port" >"$work/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do
    curl -fs "$base/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -fs "$base/readyz" >/dev/null

creds="$work/perks-demo.json"
user=$(python3 -c "import json; print(json.load(open('$creds'))['till']['username'])")
password=$(python3 -c "import json; print(json.load(open('$creds'))['till']['password'])")
admin=$(python3 -c "import json; print(json.load(open('$creds'))['adminToken'])")
md5=$(printf %s "$password" | md5sum | cut -d' ' -f1)

export PYTHONPATH="$PWD/fuzz${PYTHONPATH:+:$PYTHONPATH}"
export SCHEMATHESIS_HOOKS=schemathesis_hooks
mkdir -p "$report_dir"
common=(--checks no_internal_error --max-examples "$max_examples" --workers 2 --seed 20261126
        --phases examples,coverage,fuzzing --no-color --report ndjson --report-dir "$report_dir"
        --request-timeout 30 --suppress-health-check all)

# Schemathesis exits non-zero both for failed checks and for its own internal errors (for
# example hypothesis occasionally failing to describe a strategy); only the first are findings.
status=0
run_schemathesis() {
    local log="$work/st-$1.log"
    shift
    st run "$base/openapi.json" "${common[@]}" "$@" >"$log" 2>&1 || true
    cat "$log"
    if grep -q "Custom check failed" "$log"; then
        status=1
    fi
}
echo "== schemathesis: till operations (Basic auth), $max_examples examples each"
run_schemathesis till --auth "$user:$md5" --exclude-path-regex '^/x/perks/'
echo "== schemathesis: admin operations (/x/perks, admin token), $max_examples examples each"
run_schemathesis admin -H "Authorization: Bearer $admin" --include-path-regex '^/x/perks/'
if grep -q "panicked" "$work/server.log"; then
    echo "the server panicked during fuzzing:" >&2
    grep -A3 "panicked" "$work/server.log" | head -40 >&2
    status=1
fi
exit $status
