"""Settings come from the environment, and a bad value stops start-up naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from todo_api.core.config import DEFAULT_SECRET_KEY, SettingsError, load_settings

GOOD_PROD = {
    "APP_ENV": "prod",
    "SECRET_KEY": "k3Y-9fQz_2VbLr8mT1xNc7WpHs4dJe6u0GaZoYiKq5Rl",
    "DATABASE_URL": "postgresql://app@db/todo",
}


def test_defaults_serve_local_development() -> None:
    settings = load_settings({})
    assert settings.app_env == "dev"
    assert settings.access_token_expire_minutes == 15
    assert settings.cookie_secure is False
    assert settings.allowed_origins == ()


def test_values_are_parsed_and_lists_split() -> None:
    settings = load_settings(
        {
            "ACCESS_TOKEN_EXPIRE_MINUTES": "5",
            "ALLOWED_ORIGINS": "https://a.example, https://b.example",
            "COOKIE_SECURE": "true",
            "DB_POOL_MAX": "20",
        }
    )
    assert settings.access_token_expire_minutes == 5
    assert settings.allowed_origins == ("https://a.example", "https://b.example")
    assert settings.cookie_secure is True
    assert settings.db_pool_max == 20


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PORT", "eighty"),
        ("PORT", "70000"),
        ("APP_ENV", "staging"),
        ("ACCESS_TOKEN_EXPIRE_MINUTES", "0"),
        ("COOKIE_SECURE", "sometimes"),
        ("DATABASE_URL", "mysql://x"),
        ("RATE_LIMIT_LOGIN", "five per minute"),
        ("LOG_FORMAT", "xml"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        load_settings({variable: value})


def test_pool_bounds_must_be_ordered() -> None:
    with pytest.raises(SettingsError, match="DB_POOL_MIN"):
        load_settings({"DB_POOL_MIN": "30", "DB_POOL_MAX": "10"})


@pytest.mark.parametrize(
    "override",
    [
        {"SECRET_KEY": ""},
        {"SECRET_KEY": DEFAULT_SECRET_KEY},
        {"SECRET_KEY": "short"},
        {"COOKIE_SECURE": "false"},
        {"ALLOWED_ORIGINS": "*"},
        # Keys of obviously low entropy, however long.
        {"SECRET_KEY": "p" * 48},
        {"SECRET_KEY": "0123456789abcdef" * 3},
        {"SECRET_KEY": "aB3$" * 12},
        # Origins that would hand the cookies to pages we do not control.
        {"ALLOWED_ORIGINS": "https://*"},
        {"ALLOWED_ORIGINS": "*://*"},
        {"ALLOWED_ORIGINS": "http://*"},
        {"ALLOWED_ORIGINS": "https://app.example, null"},
        {"ALLOWED_ORIGINS": "http://app.example"},
    ],
)
def test_prod_refuses_insecure_settings(override: dict[str, str]) -> None:
    env = {k: v for k, v in {**GOOD_PROD, **override}.items() if v}
    with pytest.raises(SettingsError):
        load_settings(env)


def test_prod_accepts_a_real_secret_and_defaults_to_secure_json() -> None:
    settings = load_settings(GOOD_PROD)
    assert settings.cookie_secure is True
    assert settings.log_format == "json"


def test_prod_accepts_https_origins_and_dev_keeps_local_http_ones() -> None:
    prod = load_settings({**GOOD_PROD, "ALLOWED_ORIGINS": "https://app.example"})
    assert prod.allowed_origins == ("https://app.example",)
    dev = load_settings({"ALLOWED_ORIGINS": "http://localhost:5173"})
    assert dev.allowed_origins == ("http://localhost:5173",)


def test_a_guessable_key_is_named_but_not_shown() -> None:
    with pytest.raises(SettingsError, match="SECRET_KEY") as caught:
        load_settings({**GOOD_PROD, "SECRET_KEY": "guess" * 10})
    assert "guessguess" not in str(caught.value)


def test_secret_values_never_appear_in_the_error() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({**GOOD_PROD, "SECRET_KEY": "tiny-secret-value"})
    assert "tiny-secret-value" not in str(caught.value)


def test_the_app_process_refuses_to_start_with_the_default_secret_in_prod() -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DATABASE_URL"}}
    env.update({"APP_ENV": "prod", "DATABASE_URL": "postgresql://app@db/todo"})
    result = subprocess.run(
        [sys.executable, "-c", "from todo_api.app import create_app; create_app()"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_the_cli_names_the_bad_variable_and_exits_non_zero() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "todo_api", "check-settings"],
        capture_output=True,
        text=True,
        env={**os.environ, "DB_POOL_MAX": "lots"},
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "DB_POOL_MAX" in result.stderr
    assert "Traceback" not in result.stderr
