"""OpenAPI fuzzing with schemathesis: generated requests to the real app, checked against the
schema it publishes at /docs/openapi.json.

Every default check runs (no 5xx; status codes, content types, headers and bodies as
documented; schema-valid requests accepted and invalid ones rejected; OPTIONS and `Allow`
consistent; deleted things gone, created things found), on valid and invalid data, in every
phase schemathesis has: the schema's examples, coverage of boundary values, random fuzzing,
and stateful sequences along the links it infers between operations (create a to-do, then
read, change, complete, delete and restore it; list sessions, then rename or revoke one).

The app runs in-process on schemathesis' ASGI transport, which starts its lifespan (and so its
database pool) on an event-loop thread of its own and sends every request on that loop; the
lifespan ends with the test, before the next one starts its own. Each test has its own
database. Requests carry a superadmin's bearer token, so the authenticated and the admin
routes are exercised rather than answered with 401s.

The bounded run is part of the default suite; `just fuzz` runs the long one (marked `slow`)
and prints a summary. Runs are deterministic (fixed seed, no example database), so a failure
in CI reproduces locally.

Problems found are pinned, one test each, in tests/test_fuzz_regressions.py and listed in
KNOWN below, so this fuzzing stays green on them and fails on anything new. An entry of KNOWN
stops matching once its problem is fixed; remove it then.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import hypothesis
import jsonschema_rs
import pytest
import schemathesis
from litestar import Litestar
from schemathesis import Case, Response
from schemathesis.errors import FailureGroup
from schemathesis.python import asgi

from tests.support.accounts import PASSWORD
from tests.support.database import TEST_ENV, execute
from todo_api.app import create_app
from todo_api.core.config import load_settings

if TYPE_CHECKING:
    from schemathesis.core.failures import Failure

SCHEMA_PATH = "/docs/openapi.json"
# Any fixed number: the same requests on every run.
SEED = 20260707

# Random examples per operation (on top of the coverage phase's boundary values, which are
# most of the ~1,300 requests of the default suite's run), and stateful scenarios x steps.
BOUNDED_EXAMPLES, BOUNDED_SCENARIOS, BOUNDED_STEPS = 6, 15, 10
LONG_EXAMPLES, LONG_SCENARIOS, LONG_STEPS = 500, 300, 25

FUZZ_ENV = {
    # Fuzzing sends thousands of registrations and logins; the limits have tests of their own.
    "RATE_LIMIT_LOGIN": "1000000/minute",
    "RATE_LIMIT_REGISTER": "1000000/minute",
    "RATE_LIMIT_TOKEN": "1000000/minute",
    "RATE_LIMIT_REFRESH": "1000000/minute",
    "RATE_LIMIT_LOGIN_FAILURES": "1000000/hour",
    # Long runs outlast the default 15 minutes.
    "ACCESS_TOKEN_EXPIRE_MINUTES": "120",
    # A line per request would drown the output; errors (and so every 5xx) are still logged.
    "LOG_LEVEL": "WARNING",
}

# Nothing is excluded: operations that end sessions are sent with a throwaway account's token
# instead of the fuzzing account's, so they really run without logging the fuzzer out.
# Logout and logout-all end its session(s); revoking a session listed through the links could
# end its own; a password change or account deletion would, should the fuzzer hit the password.
SESSION_ENDING = {"Logout", "LogoutAll", "RevokeSession", "ChangePassword", "DeleteMe"}


def published_document() -> dict[str, Any]:
    """The OpenAPI document the app serves (building the app connects to nothing)."""
    settings = load_settings({**TEST_ENV, "DATABASE_URL": "postgresql://unused@127.0.0.1:1/x"})

    async def fetch() -> dict[str, Any]:
        transport = httpx.ASGITransport(app=create_app(settings))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            response = await client.get(SCHEMA_PATH)
        response.raise_for_status()
        document: dict[str, Any] = response.json()
        return document

    return asyncio.run(fetch())


DOCUMENT = published_document()
schema = schemathesis.openapi.from_dict(
    copy.deepcopy(DOCUMENT),
    config=schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "generation": {
                # Valid and invalid data: valid requests must be accepted, invalid ones rejected.
                "mode": "all",
                "deterministic": True,
                # Nothing carries over from earlier runs.
                "database": "none",
            },
        }
    ),
)


# What the fuzzer finds, matched by schemathesis' stable failure codes.


@dataclass(frozen=True)
class Finding:
    name: str
    matches: Callable[[Failure, Case, Response], bool]


def _problem(response: Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) and "status" in body else {}


def _rejected(*words: str) -> Callable[[Failure, Case, Response], bool]:
    """A valid request refused with a problem whose detail, or one of its errors, says all this."""

    def matches(failure: Failure, case: Case, response: Response) -> bool:
        if failure.code != "ST202":
            return False
        problem = _problem(response)
        texts = [str(problem.get("detail", ""))]
        texts += [str(error.get("message", "")) for error in problem.get("errors", [])]
        return any(all(word in text for word in words) for text in texts)

    return matches


def _operation_id(case: Case) -> str:
    return str(case.operation.definition.raw.get("operationId", ""))


def _invalid_header_sent_as_valid(failure: Failure, case: Case, response: Response) -> bool:
    """A request refused for a header value its schema refuses too, sent as a valid one."""
    if failure.code != "ST202":
        return False
    headers = {name.lower(): value for name, value in (case.headers or {}).items()}
    for parameter in case.operation.definition.raw.get("parameters", []):
        value = headers.get(str(parameter.get("name", "")).lower())
        if (
            parameter.get("in") == "header"
            and value is not None
            and not jsonschema_rs.validator_for(parameter["schema"]).is_valid(value)
        ):
            return True
    return False


# Real problems not fixed yet, each pinned by the (xfail) test in tests/test_fuzz_regressions.py
# it is named after; none is open.
KNOWN: list[Finding] = []

# Failures that are a limit of what a schema can say, not a fault of the app.
NOT_FAULTS = [
    # Cursors and sync tokens are opaque and signed: the schema can only say "a string of at
    # most 512 characters", so a made-up one is schema-valid and still rightly a 400.
    Finding("a made-up cursor or sync token", _rejected("Invalid cursor.")),
    # PostgreSQL cannot store NUL, so no string may contain one (the README's contract). The
    # schema says so only for query parameters; a pattern on every body string would be noise.
    # NUL is still generated, so a 5xx on that path would be caught.
    Finding("a NUL character in a string", _rejected("must not contain NUL characters")),
    # The ends of the calendar are refused (asyncpg would store them as -infinity/infinity);
    # JSON Schema has no bounds for a date-time.
    Finding("a date at the very ends of the calendar", _rejected("is out of range")),
    # The generator reuses an Idempotency-Key with another body; the README's contract is a
    # 422 (documented), which schemathesis still counts as a valid request refused.
    Finding(
        "an Idempotency-Key reused with another body",
        _rejected("This Idempotency-Key was used with a different request body."),
    ),
    # A well-formed If-Match naming a version the to-do no longer has: 412 is the contract
    # (RFC 9110 §13.1.1), which schemathesis counts as a valid request refused.
    Finding(
        "an If-Match naming another version",
        lambda f, case, r: f.code == "ST202" and r.status_code == 412,
    ),
    # schemathesis' coverage phase makes header values of letters and digits only, and no
    # If-Match value is that (an ETag is quoted, or `*`); its "default positive" case then
    # carries an invalid one, e.g. `If-Match: 0`, and calls the request valid.
    Finding("an invalid header value the fuzzer calls valid", _invalid_header_sent_as_valid),
]


@dataclass
class Tally:
    """What the fuzzing did: requests, 5xx answers, new failures, known findings seen again."""

    requests: int = 0
    server_errors: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    known: Counter[str] = field(default_factory=Counter)
    not_faults: Counter[str] = field(default_factory=Counter)

    def clear(self) -> None:
        self.__init__()

    def answered(self, response: Response) -> None:
        self.requests += 1
        if response.status_code >= 500:
            self.server_errors += 1

    def failed(self, error: FailureGroup, case: Case) -> None:
        for failure in error.exceptions:
            self.failures[f"{case.operation.label}: {failure.code} {failure.title}"] += 1

    def summary(self) -> list[str]:
        lines = [
            f"{self.requests} examples tried (requests generated per operation and stateful "
            f"steps), {len(self.failures)} new failures found, {self.server_errors} answered 5xx",
        ]
        lines += [f"  NEW {name} (x{count})" for name, count in sorted(self.failures.items())]
        lines.append(f"known findings seen again ({len(self.known)} of {len(KNOWN)}):")
        lines += [f"  {name} (x{count})" for name, count in sorted(self.known.items())]
        if unseen := sorted({finding.name for finding in KNOWN} - set(self.known)):
            lines.append("known findings not seen (fixed? then drop them from KNOWN):")
            lines += [f"  {name}" for name in unseen]
        lines.append("schema-valid requests rightly refused:")
        lines += [f"  {name} (x{count})" for name, count in sorted(self.not_faults.items())]
        return lines


TALLY = Tally()


@schema.hook
def filter_failure(context: Any, failure: Failure, case: Case, response: Response) -> bool:
    """Let through only failures that are neither pinned already nor a limit of the schema."""
    for findings, seen in ((KNOWN, TALLY.known), (NOT_FAULTS, TALLY.not_faults)):
        for finding in findings:
            if finding.matches(failure, case, response):
                seen[finding.name] += 1
                return False
    return True


# The app under test.


@dataclass
class Target:
    """A running app, the fuzzing account's token, and throwaway accounts on demand."""

    app: Litestar
    database_url: str
    token: str = ""
    # Accounts are numbered, not random, so the same run makes the same ones (their emails
    # show up in what the fuzzer lists and searches, and so in what it draws next).
    accounts: Iterator[int] = field(default_factory=itertools.count)

    def call(self, path: str, method: str, **kwargs: Any) -> Response:
        return schema[path][method].Case(**kwargs).call(app=self.app)

    def new_account(self) -> str:
        email = f"fuzz-{next(self.accounts)}@example.com"
        body = {"email": email, "password": PASSWORD}
        response = self.call("/api/v1/auth/register", "POST", body=body)
        assert response.status_code == 201, response.text
        return email

    def token_of(self, email: str) -> str:
        body = {"login": email, "password": PASSWORD}
        response = self.call("/api/v1/auth/login", "POST", body=body)
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def log_in_superadmin(self) -> None:
        """A fresh superadmin, so the admin routes are exercised too. Nobody may administer
        their own account, so the fuzzer cannot lock this one out."""
        email = self.new_account()
        execute(
            self.database_url, f"UPDATE app_user SET role = 'superadmin' WHERE email = '{email}'"
        )
        self.token = self.token_of(email)

    def headers_for(self, case: Case) -> dict[str, str]:
        token = self.token
        if _operation_id(case) in SESSION_ENDING:
            token = self.token_of(self.new_account())
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def target(settings_env: dict[str, str], database_url: str) -> Iterator[Target]:
    target = Target(create_app(load_settings({**settings_env, **FUZZ_ENV})), database_url)
    try:
        # Its first request starts the app's lifespan.
        target.log_in_superadmin()
        yield target
    finally:
        # The Piccolo engine is one per process: end this app's pool before the next test's
        # (schemathesis' pytest plugin does it too, after each test).
        asgi.shutdown_lifespans()


# Each operation on its own: examples, boundary values, random valid and invalid data.


def send(case: Case, target: Target) -> None:
    headers = target.headers_for(case)
    response = case.call(app=target.app, headers=headers)
    TALLY.answered(response)
    try:
        case.validate_response(
            response, headers=headers, transport_kwargs={"app": target.app, "headers": headers}
        )
    except FailureGroup as error:
        TALLY.failed(error, case)
        raise


# `target` is shared by the examples of one operation on purpose: one app, one database.
SHARED_TARGET = [hypothesis.HealthCheck.function_scoped_fixture]


@schema.parametrize()
@hypothesis.settings(max_examples=BOUNDED_EXAMPLES, suppress_health_check=SHARED_TARGET)
def test_every_operation_answers_as_its_schema_says(case: Case, target: Target) -> None:
    send(case, target)


# Sequences of operations along the links schemathesis infers from the schema.


DELETE, RESTORE = "DELETE /api/v1/todos/{todo_id}", "POST /api/v1/todos/{todo_id}/restore"


def run_linked_operations(target: Target, scenarios: int, steps: int) -> None:
    class Workflow(schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            # Every scenario starts from the same empty database, so the server answers the
            # same sequence the same way and Hypothesis sees the same choices each time.
            execute(target.database_url, "TRUNCATE app_user, auth_event CASCADE")
            target.accounts = itertools.count()
            target.log_in_superadmin()
            # To-do id -> whether its last successful DELETE or restore was the DELETE.
            self.deleted: dict[str, bool] = {}

        def get_call_kwargs(self, case: Case) -> dict[str, Any]:
            return {"app": target.app, "headers": target.headers_for(case)}

        def after_call(self, response: Response, case: Case) -> None:
            super().after_call(response, case)
            TALLY.answered(response)
            todo_id = (case.path_parameters or {}).get("todo_id")
            label = case.operation.label
            if (
                todo_id is not None
                and label in (DELETE, RESTORE)
                and response.status_code // 100 == 2
            ):
                self.deleted[str(todo_id)] = label == DELETE

        def validate_response(
            self, response: Response, case: Case, additional_checks: Any = None, **kwargs: Any
        ) -> None:
            try:
                case.validate_response(
                    response,
                    additional_checks=additional_checks,
                    headers=kwargs["headers"],
                    transport_kwargs=kwargs,
                    recorder=self.recorder,
                )
            except FailureGroup as error:
                kept = [f for f in error.exceptions if not self.explained(f, case)]
                if kept:
                    group = FailureGroup(kept, str(error))
                    TALLY.failed(group, case)
                    raise group from None

        def explained(self, failure: Failure, case: Case) -> str | None:
            """Why a stateful check's failure is not the app's fault, if it is not."""
            todo_id = (case.path_parameters or {}).get("todo_id")
            deleted = self.deleted.get(str(todo_id))
            reason = None
            # The checks do not know that a deleted to-do stays in the trash and that
            # POST /todos/{id}/restore brings it back, nor that only a deleted one can be
            # restored ("No such to-do in the trash" for a live one).
            if failure.code == "ST301" and deleted is False:
                reason = "a to-do read after DELETE and restore"
            elif failure.code == "ST302" and case.operation.label == RESTORE and not deleted:
                reason = "a live to-do is not in the trash, so not restorable"
            if reason is not None:
                TALLY.not_faults[reason] += 1
            return reason

    Workflow.run(
        settings=hypothesis.settings(
            max_examples=scenarios,
            stateful_step_count=steps,
            # Scenarios change the server, so a replay is not the same test: generate only,
            # as schemathesis' own state machines do.
            phases=[hypothesis.Phase.generate],
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=list(hypothesis.HealthCheck),
        )
    )


def test_linked_operations_answer_as_their_schemas_say(target: Target) -> None:
    run_linked_operations(target, BOUNDED_SCENARIOS, BOUNDED_STEPS)


# The long run: `just fuzz`.


@pytest.fixture(scope="module")
def report(pytestconfig: pytest.Config) -> Iterator[None]:
    """Print what the long run did when it is over (past pytest's output capturing)."""
    TALLY.clear()
    yield
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        reporter.write_sep("=", "fuzz summary")
        for line in TALLY.summary():
            reporter.write_line(line)


@pytest.mark.slow
@schema.parametrize()
@hypothesis.settings(max_examples=LONG_EXAMPLES, suppress_health_check=SHARED_TARGET)
def test_every_operation_at_length(case: Case, target: Target, report: None) -> None:
    send(case, target)


@pytest.mark.slow
def test_linked_operations_at_length(target: Target, report: None) -> None:
    run_linked_operations(target, LONG_SCENARIOS, LONG_STEPS)
