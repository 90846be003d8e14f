"""The package build: setuptools reads everything from pyproject.toml; this adds one step.

`build_py` also compiles the message catalogs (`cogs/locales/<lang>/LC_MESSAGES/messages.po`)
into `.mo` files inside the built package, with `cogs.i18n.compile_catalogs`, the same function
the tests and `scripts/run-bot` use on the source tree. So an installed bot (the Docker image
installs non-editable) carries its compiled catalogs, and the `.mo` files stay out of git.
"""

from __future__ import annotations

import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))  # cogs.i18n needs only the standard library and Babel (a build requirement)

from cogs.i18n import LOCALES, compile_catalogs  # noqa: E402


class BuildWithCatalogs(build_py):
    """`build_py`, then the catalogs compiled into the build."""

    def run(self) -> None:
        super().run()
        if not self.dry_run:
            compile_catalogs(dest=Path(self.build_lib) / "cogs" / "locales", source=LOCALES)


setup(cmdclass={"build_py": BuildWithCatalogs})
