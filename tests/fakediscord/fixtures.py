"""Pytest fixtures for suites that drive a bot against the fake Discord.

Use them from a conftest or a test module::

    from tests.fakediscord.fixtures import fake_discord  # noqa: F401  (re-export the fixture)

or, in the root conftest only, ``pytest_plugins = ["tests.fakediscord.fixtures"]``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from .server import FakeDiscord


def assert_clean(fake: FakeDiscord) -> None:
    """What every test's teardown asserts: no unknown route was hit, every route is in Discord's official
    OpenAPI spec, no body was refused as malformed (by the spec's schema or the fake's rules), and the fake
    had no internal error."""
    assert not fake.unknown_routes, "bot hit routes the fake does not know: " + ", ".join(
        r.route for r in fake.unknown_routes
    )
    assert not fake.unspecced_routes, "bot hit routes Discord's OpenAPI spec does not know: " + ", ".join(
        r.route for r in fake.unspecced_routes
    )
    assert not fake.invalid_bodies, "Discord would refuse these bodies (400):\n" + "\n".join(
        str(b) for b in fake.invalid_bodies
    )
    assert not fake.internal_errors, f"fake Discord internal errors: {fake.internal_errors!r}"


@pytest.fixture
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    """A started :class:`FakeDiscord` with ``fake.default`` (:meth:`FakeDiscord.setup_default`: owner, admin
    with Manage Server, moderator, alice, bob; #general, #images, #mod-log), installed in this process.
    Stop your bot before the test ends; teardown asserts ``fake.unknown_routes`` is empty."""
    async with FakeDiscord() as fake:
        fake.setup_default()
        fake.install()
        try:
            yield fake
        finally:
            fake.uninstall()
        assert_clean(fake)
