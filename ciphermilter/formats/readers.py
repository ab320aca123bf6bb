"""The reader rule: plaintext only for the readers the sender chose.

A stored key has readers: the e-mail addresses of its certificate or of its
OpenPGP user IDs (only when an admin imported it; a harvested key has none),
plus the addresses and ``@domain`` bindings an admin added with
``ciphermilter keys bind``. A message is decrypted only when every internal
envelope recipient is a reader of a key the message is encrypted to, and
when that key opens the same content: the sender chose its readers by
wrapping the one content key to their keys, so a recipient info that an
attacker added for a key of their own (wrapping another content key) opens
nothing for anyone.

Pure functions and small value types only: the handlers gather the keys a
message names (through the engines), the core knows the envelope, and this
module decides.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, TypeVar

# Header values (ciphermilter(7)): the reason a found key was not used. No envelope address in them:
# envelope recipients include Bcc, and every recipient reads the header.
NOT_EVERY_READER = "not encrypted to a key of every recipient (reader policy)"
NO_RECIPIENT = "no envelope recipient to decrypt for (reader policy)"

# The three kinds of recipients a transaction is split by (milter, RCPT time).
EXTERNAL, READER, NO_KEY = "external", "internal with a key", "internal without a key"

Candidate = TypeVar("Candidate")
Key = TypeVar("Key")  # what session_key unwraps: a content key, or an OpenPGP (algorithm, key)
Content = TypeVar("Content")


def base_address(address: str, delimiters: str = "") -> str:
    """An envelope address as readers are compared: lower case, no angle brackets, no ``+detail``.

    As Postfix's ``recipient_delimiter``: any one of ``delimiters`` splits the
    local part, and what follows the first one is dropped
    (``Bob+Lists@Example.COM`` -> ``bob@example.com``).
    """
    address = address.strip().strip("<>").strip().lower()
    local, at, domain = address.rpartition("@")
    if not at:
        return address
    cut = min((local.find(d) for d in delimiters if d in local), default=-1)
    if cut > 0:  # Postfix keeps a local part that starts with the delimiter as it is
        local = local[:cut]
    return f"{local}@{domain.rstrip('.')}"


def reads(readers: frozenset[str], address: str) -> bool:
    """True when ``address`` (a base address) is among ``readers`` itself or by its ``@domain``."""
    return address in readers or "@" + address.rpartition("@")[2] in readers


@dataclass(frozen=True)
class ReaderRule:
    """Who the core decrypts for: the internal envelope recipients, as base addresses.

    ``required`` False is the site-wide shared key setup (``require_reader =
    false``): any stored key opens any message, as before the rule.
    """

    recipients: tuple[str, ...]
    required: bool = True

    def arrange(self, candidates: list[Candidate],
                readers_of: Callable[[Candidate], frozenset[str]]) -> list[list[Candidate]]:
        """The keys to open a layer with, in groups: one group per recipient, holding the keys they read.

        The first group's keys open the content; every other group must hold
        a key that yields the same content key (:func:`open_agreeing`). An
        empty list means the rule refuses: some recipient reads none of them.
        Without the rule, all candidates form one group, tried in order.
        """
        if not self.required:
            return [candidates] if candidates else []
        groups: list[list[Candidate]] = []
        for recipient in self.recipients:
            group = [c for c in candidates if reads(readers_of(c), recipient)]
            if not group:
                return []
            if group not in groups:
                groups.append(group)
        return groups

    def refusal(self) -> str:
        return NOT_EVERY_READER if self.recipients else NO_RECIPIENT


NO_RULE = ReaderRule((), required=False)


class DecoyKey(bytes):
    """Random key material that stands in for a key that failed to unwrap (implicit rejection, RFC 3218
    section 2.3.2): the engines decrypt the content with it all the same and then discard what it opened.

    A failed unwrap (bad RSA padding, OAEP, AES key wrap, OpenPGP checksum) then costs the same content
    decryption as a good key on changed content (a bad GCM tag or MDC), so the time of the reply no longer
    tells a sender which step failed: before, skipping that decryption made "wrong key" 0.23 ms faster
    than "bad tag" over SMTP (z = -4.5 over 1,000 messages each), a padding oracle by the clock.
    """

    @classmethod
    def of_size(cls, size: int) -> DecoyKey:
        return cls(os.urandom(size))


class Disagreement(Exception):
    """A key of a later group opened a different content key than the one that opened the content."""


def open_agreeing(groups: list[list[Candidate]], session_key: Callable[[Candidate], Key | None],
                  open_content: Callable[[Key], Content | None]) -> tuple[Content, Candidate] | None:
    """(content, candidate) opened with a session key that a candidate of every group yields.

    ``session_key`` unwraps one candidate's key (None when no attempt fits
    it, a :class:`DecoyKey` when the attempt failed); ``open_content``
    decrypts the content with a session key (None when it does not open,
    always None for a decoy). Each candidate costs at most one private-key operation,
    however many groups it is in, so a message costs no more of them than
    it has (recipient, key) pairs, as without the rule. Returns None when
    the first group opens nothing; raises :class:`Disagreement` when a later
    group yields no matching key.
    """
    unwrapped: dict[int, Key | None] = {}  # by id(): the candidates live as long as this call

    def key_of(candidate: Candidate) -> Key | None:
        if id(candidate) not in unwrapped:
            unwrapped[id(candidate)] = session_key(candidate)
        return unwrapped[id(candidate)]

    opened: tuple[Content, Candidate, Key] | None = None
    for candidate in groups[0] if groups else []:
        key = key_of(candidate)
        content = None if key is None else open_content(key)
        if key is not None and content is not None:
            opened = (content, candidate, key)
            break
    if opened is None:
        return None
    content, used, agreed = opened
    for group in groups[1:]:
        if not any(key_of(c) == agreed for c in group):
            raise Disagreement()
    return content, used
