"""System dependencies of the tests: a missing one fails the test under CI and skips it elsewhere.

`make test` installs them (`make system-deps`, Debian packages); a CI run that lacks one has a missing
install step, which must show as a failure with the hint, never as a quiet skip.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest

INSTALL_HINT = "run `make system-deps` (as root it installs them) or `sudo apt-get install -y {packages}`"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def unavailable(what: str, *, packages: str) -> NoReturn:
    """Fail (under CI) or skip (elsewhere) because ``what`` is unavailable, with the install command."""
    message = f"{what}: {INSTALL_HINT.format(packages=packages)}"
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def require_tool(*names: str, packages: str, why: str) -> str:
    """The path of the first of ``names`` on PATH, else fail/skip naming the Debian ``packages``."""
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    unavailable(f"{' / '.join(names)} is not installed ({why})", packages=packages)
