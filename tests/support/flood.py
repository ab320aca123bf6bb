"""Forged-header floods (issue 14, section 3): a plain message with N reserved-namespace fields, shared by
test_flood, test_files_at_rest and e2e/test_forged_flood."""

from __future__ import annotations

from ciphermilter.core.settings import Limits

LIMIT = Limits().max_forged_headers
REASON = f"more than {LIMIT} forged X-CipherMail headers"
# Reserved names in the spellings a sender would use to get one past a filter: several names, any case,
# the legacy namespace; no one name reaches the limit alone, so only counting them together rejects.
FORGED_NAMES = (b"X-CipherMail-Info-SMIME-Signed", b"x-ciphermail-info-signer-verified-0-0",
                b"X-DJIGZO-Info-Signer-Verified", b"X-CipherMail-Anything")
KEPT = [b"From: alice@sender-pub.example", b"Subject: flood"]
BODY = b"plain text\r\n"


def forged_fields(count: int) -> list[bytes]:
    return [FORGED_NAMES[i % len(FORGED_NAMES)] + b": True" for i in range(count)]


def flooded(count: int) -> bytes:
    """A plain message with ``count`` forged fields, half of them before its Subject:, half after."""
    forged = forged_fields(count)
    fields = [KEPT[0], *forged[:count // 2], KEPT[1], *forged[count // 2:]]
    return b"\r\n".join(fields) + b"\r\n\r\n" + BODY
