"""Shared fixtures: the packaged knowledge base, the baseline patient, and a writable copy of the tree."""

from __future__ import annotations

import copy
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text

from hemicare.engine import KnowledgeBase, load_default
from hemicare.engine.check import merge
from hemicare.engine.loader import default_root

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="session")
def kb() -> KnowledgeBase:
    return load_default()


@pytest.fixture
def baseline(kb: KnowledgeBase) -> dict[str, Any]:
    return copy.deepcopy(kb.baseline_patient)


@pytest.fixture
def patient(baseline: dict[str, Any]) -> Any:
    """Build a patient mapping: the baseline with a patch deep-merged on top."""

    def build(**patch: Any) -> dict[str, Any]:
        return merge(baseline, patch)

    return build


@pytest.fixture
def kb_tree(tmp_path: Path) -> Path:
    """A writable copy of the packaged knowledge tree, for tests that break it on purpose."""
    target = tmp_path / "knowledge"
    shutil.copytree(default_root(), target)
    return target


# --- databases ---------------------------------------------------------------------------------------------------

POSTGRES_URL = os.environ.get("HEMICARE_TEST_POSTGRES_URL")
DATABASES = ["sqlite"] + (["postgresql"] if POSTGRES_URL else [])


def _with_schema(url: str, schema: str) -> str:
    url = url.replace("postgresql://", "postgresql+psycopg://", 1) if url.startswith("postgresql://") else url
    joiner = "&" if "?" in url else "?"
    return f"{url}{joiner}options=-csearch_path%3D{schema}"


@contextmanager
def empty_database(kind: str, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database: a SQLite file, or a fresh schema on the test PostgreSQL server (dropped after)."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'hemicare.db'}"
        return
    assert POSTGRES_URL is not None
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield _with_schema(POSTGRES_URL, schema)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=DATABASES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file, or a fresh schema on the test PostgreSQL server."""
    with empty_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """A migrated database."""
    from hemicare.db.engine import make_engine, upgrade

    made = make_engine(db_url)
    upgrade(made)
    yield made
    made.dispose()


@pytest.fixture
def clinic_zone() -> Iterator[Callable[[str], None]]:
    """Run the server's clock in another time zone, as a clinic away from UTC does."""
    before = os.environ.get("TZ")

    def move(zone: str) -> None:
        os.environ["TZ"] = zone
        time.tzset()

    yield move
    if before is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = before
    time.tzset()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Debian's Chromium, started once per browser test module (tests.browser says how). Not once per run: Playwright
    keeps an event loop running in this thread while it is open, and the tests that call asyncio.run would fail."""
    from playwright.sync_api import sync_playwright

    from .browser import ARGS, CHROMIUM

    assert Path(CHROMIUM).exists(), "install Debian's chromium"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        launched.close()
