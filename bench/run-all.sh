#!/usr/bin/env bash
# Reproduces every figure of the README's "Performance and reliability" section in one run:
# each benchmark on SQLite and on PostgreSQL (W1 also without group commit), the SIGKILL crash
# test's long form, API fuzzing with schemathesis, then bench/results/summary.{md,json}.
#
# Usage: bench/run-all.sh
# Environment:
#   PERKS_BENCH_PG_SERVER   PostgreSQL server URL without a database
#                           (default postgres://postgres@127.0.0.1:5432; "" skips PostgreSQL)
#   PERKS_BENCH_ONLY        space-separated subset of: transactions redemption coupons workloads
#                           customer_search crash fuzz (default: all)
#   PERKS_CRASH_CYCLES      SIGKILL cycles per backend for the crash test (default 1000)
#   PERKS_FUZZ_EXAMPLES     schemathesis examples per operation (default 25)
#   PERKS_BENCH_CUSTOMERS etc. are passed through to the benchmarks (see each bench's module doc).
# Takes about 35 minutes on a 2-core machine with the defaults (customer_search seeds 1,000,000
# customers per backend; the crash test's 1,000 cycles per backend take about 10 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."

pg_server="${PERKS_BENCH_PG_SERVER-postgres://postgres@127.0.0.1:5432}"
only="${PERKS_BENCH_ONLY:-transactions redemption coupons workloads customer_search crash fuzz}"
export CARGO_TERM_COLOR=never

wanted() { [[ " $only " == *" $1 "* ]]; }

psql_admin() {
    psql "$pg_server/postgres" -v ON_ERROR_STOP=1 -qtA -c "$1"
}

# Runs one benchmark on SQLite, then on a fresh PostgreSQL database when a server is given.
bench_both() {
    local name="$1"
    echo "== $name on SQLite"
    cargo bench --locked --bench "$name"
    if [[ -n "$pg_server" ]]; then
        local db="perks_bench_$name"
        psql_admin "DROP DATABASE IF EXISTS $db WITH (FORCE)"
        psql_admin "CREATE DATABASE $db"
        echo "== $name on PostgreSQL"
        PERKS_BENCH_DATABASE_URL="$pg_server/$db" cargo bench --locked --bench "$name"
        psql_admin "DROP DATABASE IF EXISTS $db WITH (FORCE)"
    fi
}

cargo bench --locked --no-run
for name in transactions redemption coupons workloads customer_search; do
    if wanted "$name"; then
        bench_both "$name"
    fi
done
if wanted transactions; then
    echo "== transactions on SQLite without group commit (the 'before' figures)"
    PERKS_BENCH_GROUP_COMMIT=0 cargo bench --locked --bench transactions
fi

if wanted crash; then
    echo "== SIGKILL crash test, ${PERKS_CRASH_CYCLES:-1000} cycles per backend"
    crash_log=bench/results/crash.log
    if [[ -n "$pg_server" ]]; then
        psql_admin "DROP DATABASE IF EXISTS perks_bench_crash WITH (FORCE)"
        psql_admin "CREATE DATABASE perks_bench_crash"
        export PERKS_TEST_POSTGRES_URL="$pg_server/perks_bench_crash"
    fi
    PERKS_CRASH_CYCLES="${PERKS_CRASH_CYCLES:-1000}" \
        cargo test --locked --test api crash:: -- --nocapture --test-threads 1 2>&1 | tee "$crash_log"
    if [[ -n "$pg_server" ]]; then
        psql_admin "DROP DATABASE IF EXISTS perks_bench_crash WITH (FORCE)"
    fi
fi

if wanted fuzz; then
    echo "== API fuzzing, ${PERKS_FUZZ_EXAMPLES:-25} examples per operation"
    if ! command -v st >/dev/null 2>&1; then
        python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore schemathesis==4.32.5
    fi
    cargo build --locked
    fuzz/api.sh "${PERKS_FUZZ_EXAMPLES:-25}" 2>&1 | tee bench/results/fuzz.log
fi

python3 bench/summary.py
cat bench/results/summary.md
