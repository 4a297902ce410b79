"""The admin in a real browser: headless Debian Chromium, driven by Playwright, against a real
server process (`python -m todo_api serve`) on the test's database.

Skipped when /usr/bin/chromium is absent (`.ci/run` installs it). Playwright never downloads a
browser here: it is pointed at the system's Chromium.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.support.accounts import PASSWORD, unique_email
from tests.support.cli import REPO_ROOT, run_cli
from tests.support.serving import StartServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO_ROOT / "test-artifacts"
STAFF, STAFF_PASSWORD = "ops", "staff passphrase 0123"
TIMEOUT_MS = 10_000

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="the browser test needs Debian's Chromium at /usr/bin/chromium "
    "(apt-get install chromium; .ci/run does it when run as root)",
)


@pytest.fixture
def server(database_url: str, start_server: StartServer) -> str:
    """`python -m todo_api serve` in its own process on the test's database; its base URL."""
    process = start_server(database_url)
    asyncio.run(process.wait_ready(seconds=20))
    return process.url


def test_staff_see_an_api_users_todo_and_revoke_their_session_in_the_browser(
    server: str, database_url: str
) -> None:
    from playwright.sync_api import expect, sync_playwright

    staff = run_cli(database_url, "admin-user", STAFF, STAFF_PASSWORD)
    assert staff.returncode == 0, staff.stderr

    with httpx.Client(base_url=server, timeout=10) as api:
        email = unique_email("browser")
        assert api.post(
            "/api/v1/auth/register", json={"email": email, "password": PASSWORD}
        ).is_success
        login = api.post(
            "/api/v1/auth/login",
            json={"login": email, "password": PASSWORD, "device_name": "Ada's phone"},
        )
        assert login.status_code == 200, login.text
        session_id = login.json()["session_id"]
        bearer = {"Authorization": f"Bearer {login.json()['access_token']}"}
        title = "Buy oat milk (from the API)"
        assert api.post("/api/v1/todos", json={"title": title}, headers=bearer).status_code == 201
        assert api.get("/api/v1/users/me", headers=bearer).status_code == 200

        ARTIFACTS.mkdir(exist_ok=True)
        screenshot = ARTIFACTS / "admin-todos.png"
        screenshot.unlink(missing_ok=True)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM),
                headless=True,
                args=CHROMIUM_ARGS,
                timeout=TIMEOUT_MS,
            )
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 800}, locale="en-US")
                page.set_default_timeout(TIMEOUT_MS)
                page.set_default_navigation_timeout(TIMEOUT_MS)
                page_errors: list[str] = []
                page.on("pageerror", lambda error: page_errors.append(str(error)))

                # Sign in on the admin's own login page.
                page.goto(f"{server}/admin/")
                page.locator('input[name="username"]').fill(STAFF)
                page.locator('input[name="password"]').fill(STAFF_PASSWORD)
                page.locator('[data-uitest="login_button"]').click()

                # Open the to-do table from the sidebar: the API's to-do is there, with its owner.
                page.locator('a[href="#/todo/"]').click()
                todo = page.locator("tr", has_text=title)
                expect(todo).to_be_visible()
                expect(todo).to_contain_text(email)
                page.screenshot(path=str(screenshot), full_page=True)

                # Find the user's device session, then revoke it through the operator form.
                page.locator('a[href="#/device_session/"]').click()
                device = page.locator("tr", has_text=email)
                expect(device).to_contain_text("Ada's phone")
                shown_id = device.locator("td").nth(1).inner_text().strip()
                assert shown_id == session_id
                page.locator('a[href="#/forms/revoke-device-session/"]').click()
                page.locator('input[name="session_id"]').fill(shown_id)
                page.locator('[data-uitest="submit_custom_form_button"]').click()
                expect(page.get_by_text(f"Revoked the session {session_id}")).to_be_visible()
                page.screenshot(path=str(ARTIFACTS / "admin-revoked.png"), full_page=True)

                # The session table now shows it revoked.
                page.goto(f"{server}/admin/#/device_session/")
                expect(page.locator("tr", has_text=email)).to_contain_text("revoked_by_staff")
                assert page_errors == []
            finally:
                browser.close()

        assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert screenshot.stat().st_size > 10_000
        # The API refuses the revoked session's access token at once.
        assert api.get("/api/v1/users/me", headers=bearer).status_code == 401
