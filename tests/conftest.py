"""Shared fixtures: a private SDK home (offline, no telemetry) and throw-away connector projects."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools import sdk


@pytest.fixture(scope="session")
def sdk_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """HOME for `fivetran debug`: never the developer's real one."""
    return tmp_path_factory.mktemp("sdk-home")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A connector project of its own (links to this code), so each test has its own warehouse and state."""
    return sdk.make_project(tmp_path / "project")
