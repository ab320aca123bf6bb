"""From: and the signer: the one rule both formats use for their mismatch flags (spec, "From and the signer").

Readers judge a signature by the address they see in From:, so the reading
is the strictest one: exactly one From: field holding exactly one mailbox,
that parses without defect, whose address is a verified signer's and whose
display name (or comment) shows no other address. The fields are parsed
with the stdlib's RFC 5322 parser (``email.headerregistry`` through the
default policy), not ``parseaddr``, which reads only the first token of
``eve@example.org <boss@example.org>``.
"""

from __future__ import annotations

import email.header
import email.policy
import re
import unicodedata
from collections.abc import Iterable
from email import errors

from ciphermilter.formats import memo

# Something a reader takes for an address, wherever it stands: an "@" between two runs of characters
# that cannot delimit an address.
_ADDRESS_CHAR = r"[^\s<>()\[\]\"',;:@\\]"
# Only from the start of a run of address characters: a match can start nowhere else (it would end where
# one from the run's start ends), and retrying at every character of a run without "@" was quadratic
# (20,000 characters: 0.9 s).
_ADDRESS_LIKE = re.compile(f"(?<!{_ADDRESS_CHAR}){_ADDRESS_CHAR}+@{_ADDRESS_CHAR}+")
# The stdlib's RFC 5322 parser and its encoded-word decoder are quadratic on long fields (40,000 characters of
# display name: 3 s, 20,000 encoded words: 55 s), and a From: inside a message reaches us at any length. No
# real mailbox comes near this; a longer From: is read as one that does not parse: mismatch.
MAX_FROM_LENGTH = 2048  # characters


def from_names_signer(from_fields: list[str] | tuple[str, ...], signer_emails: Iterable[str]) -> bool:
    """True when the From: fields name exactly one mailbox and it is one of ``signer_emails`` (no mismatch)."""
    if len(from_fields) != 1:
        return False
    address = _single_mailbox(from_fields[0])
    return address is not None and address in {e.lower() for e in signer_emails}


# Memoised by the field's text: a correspondent's From: comes back on every message he signs, and the
# RFC 5322 parse (240 us) costs more than the RSA check of the signature. Safe: bounded like every memo of
# what senders choose (memo.MAX_MEMO_BYTES); the value is the immutable text, the result a str or None.
@memo.of_small_encodings(maxsize=512)
def _single_mailbox(value: str) -> str | None:
    """The lower-case address of a From: value holding one clean mailbox and no other address, else None."""
    if len(value) > MAX_FROM_LENGTH:
        return None
    try:
        parsed = email.policy.default.header_factory("From", value)
        groups, defects = parsed.groups, parsed.defects
    except Exception:  # noqa: BLE001  the parser raises assorted errors on hostile input: it does not parse
        return None
    if len(groups) != 1 or groups[0].display_name is not None or len(groups[0].addresses) != 1:
        return None  # several mailboxes, a group, or none
    if any(not isinstance(defect, errors.ObsoleteHeaderDefect) for defect in defects):
        return None  # "eve@example.org <boss@example.org>" parses only with an InvalidHeaderDefect
    mailbox = groups[0].addresses[0]
    address = mailbox.addr_spec.lower()
    if "@" not in address:
        return None
    # NFKC, as a reader's eye does: a full-width or small "@" (U+FF20, U+FE6B) in a display name shows an address.
    visible = unicodedata.normalize("NFKC", mailbox.display_name + " " + _decoded(value))
    shown = {found.lower().rstrip(".") for found in _ADDRESS_LIKE.findall(visible)}
    return address if shown <= {address} else None


def _decoded(value: str) -> str:
    """The field with its encoded words decoded, as a reader shows display names and comments.

    Word by word: one word in a charset nobody knows (``=?x-unknown?q?a?=``) must not hide the
    valid word beside it, which every reader still decodes and shows. An unknown charset's bytes are
    read as Latin-1 (each byte one character: an "@" stays visible). The words are given both run
    together and spaced apart, so no address a reader could piece together is missed (the cost is
    at most a false mismatch flag, never a missed one)."""
    try:
        words = [_word_text(text, charset) for text, charset in email.header.decode_header(value)]
    except Exception:  # noqa: BLE001  a field the decoder cannot split is shown as it is
        return value
    return "".join(words) + " " + " ".join(words)


def _word_text(text: bytes | str, charset: str | None) -> str:
    """One piece of ``email.header.decode_header``: text as is, bytes in their charset (unencoded text and
    unknown charsets as Latin-1)."""
    if isinstance(text, str):
        return text
    try:
        return text.decode(charset or "latin-1", errors="replace")
    except LookupError:
        return text.decode("latin-1")
