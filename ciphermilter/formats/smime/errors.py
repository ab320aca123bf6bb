"""The CMS engine's failures: one exception per way a structure cannot be used, each with a stable reason.

Failure reasons are short, stable strings: they end up in header values that
Sieve rules match. Every failure of a key that was actually tried gives the
same reason, ``decryption failed``, whatever broke (RSA padding, key unwrap,
content padding, GCM tag): a sender who could tell these apart would have a
padding oracle (Bleichenbacher, RFC 3218).

A configured limit (more RecipientInfos or SignerInfos than allowed) is not
one of these: the engine raises the handler contract's ``LimitExceeded``, as
the OpenPGP engine and the decompression budget do, and the on_limit policy
decides.
"""

from __future__ import annotations

DECRYPTION_FAILED = "decryption failed"
MALFORMED = "malformed CMS"


class CmsError(Exception):
    """A CMS structure cannot be used; ``reason`` is the short stable text for the reason header."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class MalformedCms(CmsError):
    def __init__(self, reason: str = MALFORMED):
        super().__init__(reason)


class UnsupportedAlgorithm(CmsError):
    pass


class KeyNotFound(CmsError):
    def __init__(self) -> None:
        super().__init__("no private key for any recipient")


class DecryptionFailed(CmsError):
    def __init__(self) -> None:
        super().__init__(DECRYPTION_FAILED)


class KeysRefused(CmsError):
    """Keys for the layer are stored, but the caller's arranger refused every one (before any was used)."""

    def __init__(self) -> None:
        super().__init__("keys refused")
