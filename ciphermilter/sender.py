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
from email import errors

from ciphermilter import memo

# Something a reader takes for an address, wherever it stands: an "@" between two runs of characters
# that cannot delimit an address.
_ADDRESS_LIKE = re.compile(r"[^\s<>()\[\]\"',;:@\\]+@[^\s<>()\[\]\"',;:@\\]+")


def from_names_signer(from_fields: list[str] | tuple[str, ...], signer_emails) -> bool:
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
    shown = {found.lower().rstrip(".") for found in _ADDRESS_LIKE.findall(mailbox.display_name + " " + _decoded(value))}
    return address if shown <= {address} else None


def _decoded(value: str) -> str:
    """The field with its encoded words decoded, as a reader shows display names and comments."""
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except Exception:  # noqa: BLE001  an undecodable encoded word is shown as it is
        return value
