"""The operator commands (`python -m todo_api.cli ...`), run as the justfile runs them."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from tests.conftest import TEST_ENV
from tests.factories import PASSWORD, login, new_user, unique_email

pytestmark = pytest.mark.anyio

REPO_ROOT = Path = None  # replaced below; keeps the import block tidy
