"""Who did something: the operating-system user behind a CLI command, the logged-in user behind the UI.

Identities are recorded as ``cli:<os user>@<host>`` (the command line: the OS account running it, from
the password database, never a free-text flag) or ``ui:<airflow user>`` (the Airflow UI: the
authenticated user). :func:`same_person` compares the *person* across both paths, so an approval is
refused when the approver is the requester, whichever path each used.
"""

from __future__ import annotations

import getpass
import os
import socket

#: Prefixes of recorded identities (``attestly-cli`` is the legal-hold commands' older form).
_PREFIXES = ("cli", "attestly-cli", "ui", "airflow")


def os_user() -> str:
    """The OS account running this process: the password database's name for the effective uid, else
    ``getpass.getuser()`` (environment), else ``uid<N>``."""
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError, AttributeError):
        pass
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid{os.geteuid()}" if hasattr(os, "geteuid") else "unknown"


def cli_identity() -> str:
    """``cli:<os user>@<host>`` (at most 128 characters)."""
    return f"cli:{os_user()}@{socket.gethostname()}"[:128]


def person(identity: str) -> str:
    """The person behind a recorded identity, for comparison: the prefix (``cli:``, ``ui:`` …) and any
    ``@host`` / ``@domain`` part removed, case-folded."""
    text = (identity or "").strip()
    prefix, sep, rest = text.partition(":")
    if sep and prefix in _PREFIXES:
        text = rest
    return text.partition("@")[0].strip().casefold()


def same_person(a: str, b: str) -> bool:
    """Whether two recorded identities name the same person (see :func:`person`)."""
    pa, pb = person(a), person(b)
    return bool(pa) and pa == pb
