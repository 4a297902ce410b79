# todo-api recipes. Run them as `uv run just <recipe>` so the project's environment is active.
set dotenv-load
set positional-arguments

# List the recipes
default:
    @just --list --unsorted

# Serve with auto-reload on HOST:PORT (default 127.0.0.1:8000); embedded PostgreSQL unless DATABASE_URL is set
dev:
    python -m todo_api dev

# Serve production-style: WEB_CONCURRENCY workers, no reload (run `just migrate` first)
serve:
    python -m todo_api serve

# Run the tests (extra arguments go to pytest, e.g. `just test -k ready -x`)
test *args:
    python -m pytest "$@"

# Fuzz the API at length with schemathesis (a few minutes) and print a summary; `just test` runs a short fuzz
fuzz *args:
    python -m pytest -m slow tests/test_fuzz.py "$@"

# Fault injection for a few minutes (serve SIGKILLed/SIGTERMed under load, PostgreSQL stopped, backends terminated, racing cleanups); prints a summary, fails on any lost write or 5xx. Options: `just chaos --help`
chaos *args:
    python -m tests.chaos_run "$@"

# Apply pending database migrations
migrate:
    python -m todo_api migrate

# Reverse the last N migrations of the app's tables (default 1), e.g. `just migrate-down 2`
migrate-down n="1":
    python -m todo_api migrate-down "$1"

# Create a migration from the changes to the tables (e.g. `just makemigrations "add due_at"`)
makemigrations desc="":
    piccolo migrations new todo_api --auto --desc="{{ desc }}"

# Lint: ruff check, ruff format check, mypy strict
lint:
    ruff check .
    ruff format --check .
    mypy

# Format the code and apply safe lint fixes
fmt:
    ruff format .
    ruff check --fix .

# Open psql on the current database (embedded or DATABASE_URL)
db-shell:
    python -m todo_api db-shell

# Check the environment's settings without starting anything
check-settings:
    python -m todo_api check-settings

# Create an account with any role, e.g. `just create-user admin@example.com 'long password' superadmin`
create-user email password role="user":
    python -m todo_api create-user "$1" "$2" "$3"

# Bring accounts over from another backend, password hashes and all: `just import-users users.csv`, or `just import-users --from-database URL --query "SELECT email, hashed_password, is_active FROM \"user\""`
import-users *args:
    python -m todo_api import-users "$@"

# Create an active staff superuser for /admin/ (or set its password), e.g. `just admin-user ops 'long password'`; prompts without arguments
admin-user *args:
    python -m todo_api admin-user "$@"

# Purge dead sessions, to-do tombstones past retention, expired idempotency keys (the app also runs it)
cleanup:
    python -m todo_api cleanup

# Measure login cost (production argon2) and /users/me p99 during a 20-login storm
bench-auth:
    python -m benchmarks.auth_latency

# List latency at 100 vs 100,000 to-dos for one user (first, deep, filtered page; delta sync)
bench-list:
    python -m benchmarks.list_latency

# Benchmark ours vs a bare-ASGI ceiling vs a FastAPI peer on loopback (wrk, embedded PostgreSQL); `just bench --quick` < 2 min
bench *args:
    uv run --group bench python -m benchmarks.bench "$@"
