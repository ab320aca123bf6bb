"""Internal domains: exact names and ``*.example.com`` wildcards."""

from __future__ import annotations

import re

# A DNS name (letters, digits, hyphens, dots; IDNs in their A-label form), optionally "*." first.
_DOMAIN = re.compile(r"(\*\.)?([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*\Z")


class DomainError(ValueError):
    pass


def normalise(pattern: str) -> str:
    """Lower-case, strip a final dot, and refuse anything that is not a domain or ``*.domain``."""
    cleaned = pattern.strip().lower().rstrip(".")
    try:
        cleaned = cleaned.encode("idna").decode("ascii") if not cleaned.isascii() else cleaned
    except UnicodeError:
        raise DomainError(f"not a domain name: {pattern!r}") from None
    if not _DOMAIN.match(cleaned) or len(cleaned) > 253:
        raise DomainError(f"not a domain name: {pattern!r}")
    return cleaned


def matches(domain: str, pattern: str) -> bool:
    """``*.example.com`` matches every subdomain of example.com, not example.com itself."""
    domain = domain.lower().rstrip(".")
    if pattern.startswith("*."):
        return domain.endswith(pattern[1:])
    return domain == pattern


def address_domain(address: str) -> str:
    """Domain part of an envelope address such as ``<bob@example.com>``; empty when there is none."""
    address = address.strip().strip("<>")
    return address.rpartition("@")[2].lower().rstrip(".") if "@" in address else ""
