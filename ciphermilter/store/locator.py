"""Where the key store is: a SQLite file (a plain path or ``sqlite:///path``) or a PostgreSQL database (a libpq
URL ``postgresql://…``, multi-host form included).

Read once, here, for the configuration's ``store``, ``--store`` and
``CIPHERMILTER_STORE`` alike. Anything else that looks like a URL (a scheme
before ``://``, or ``postgres:``/``sqlite:`` without it) is refused with one
line: it was once taken for a file name, and ``--store postgresql://db/keys``
quietly made a directory ``postgresql:`` holding a new, empty SQLite store.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Backend = Literal["sqlite", "postgresql"]

_POSTGRESQL_SCHEMES = ("postgresql", "postgres")  # the two libpq accepts
# scheme://: a relative file name such as "keys:2026.db" is not a URL.
_URL_LIKE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+://")


class LocatorError(ValueError):
    """The store's name is a URL of no backend we have, or an unusable one; ``str()`` is one line."""


@dataclass(frozen=True)
class Locator:
    """A parsed store name: the backend and its target (a file path, or the libpq URL as given)."""

    backend: Backend
    target: str

    @property
    def shared(self) -> bool:
        """Whether several gateways may use the store at once (a database server, not a local file)."""
        return self.backend == "postgresql"

    @property
    def display(self) -> str:
        """The name for logs and messages: a URL without its password."""
        return redacted(self.target) if self.shared else self.target


def parse(name: str) -> Locator:
    """The backend ``name`` names; LocatorError for any other URL (never a file name made of it)."""
    scheme = name.split(":", 1)[0].lower() if ":" in name else ""
    if scheme in _POSTGRESQL_SCHEMES and name[len(scheme):].startswith("://"):
        return Locator("postgresql", name)
    if scheme == "sqlite":
        if not name.startswith("sqlite:///") or len(name) == len("sqlite:///"):
            raise LocatorError(f"store {redacted(name)}: a SQLite URL is sqlite:///path/to/store.db")
        return Locator("sqlite", name[len("sqlite://"):])  # a file URL's path: sqlite:///var/x.db is /var/x.db
    if scheme in _POSTGRESQL_SCHEMES or _URL_LIKE.match(name):
        raise LocatorError(f"store {redacted(name)}: not a store this ciphermilter knows; give a file path,"
                           " sqlite:///path or postgresql://host/database")
    return Locator("sqlite", name)


def names_shared(name: str) -> bool:
    """Whether ``name`` names a store several gateways share (a refused name names none: opening it says why)."""
    try:
        return parse(name).shared
    except LocatorError:
        return False


def redacted(url: str) -> str:
    """``url`` with any password replaced by ``***`` (in the authority and in a ``password=`` parameter)."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        return url
    authority, tail = re.match(r"([^/?]*)(.*)", rest, re.S).groups()  # type: ignore[union-attr]
    if "@" in authority:
        credentials, _, hosts = authority.rpartition("@")
        user, colon, _ = credentials.partition(":")
        authority = f"{user}{':***' if colon else ''}@{hosts}"
    return f"{scheme}://{authority}" + re.sub(r"(?i)([?&]password=)[^&]*", r"\1***", tail)
