"""The one log line per message, written for a Postfix admin's grep.

Like Postfix's own lines it starts with the queue ID (the :class:`~ciphermilter.core.triage.QueueLog` prefix),
then ``name=value`` fields in a fixed order; a field that does not apply is left out, as Postfix does::

    4Bq2Xk1yZ: from=<alice@example.org> to=<bob@example.com> result=decrypted format=smime cipher=AES-256-CBC
    signer=<alice@example.org> verified=yes trusted=yes size=4711 new_body=3021 action=pass time=12.3ms

(one line; folded here). ``result`` is the closed vocabulary of :mod:`ciphermilter.core.result`, followed by
the reason in parentheses where it has one, as Postfix writes ``status=deferred (reason)``. ciphermilter(8)
shows an example for every result; tests/test_logline.py renders each one and compares.

The envelope addresses and many reasons come from the sender: every character that could end the line, fake
a field or hide in a terminal (controls, white space, ``<>,=()"`` and the backslash in addresses, controls and
``=`` in reasons) is written as ``\\xNN`` (``\\uNNNN`` above Latin-1), so a line stays one line and a grep
for ``result=decrypted`` matches only our word. Parentheses inside a reason become brackets.
"""

from __future__ import annotations

from collections.abc import Iterable

from ciphermilter.core.findings import Facts
from ciphermilter.core.outcome import Outcome
from ciphermilter.core.triage import Envelope

# Characters that delimit our fields: escaped wherever the sender chose the text.
_ADDRESS_SPECIALS = frozenset('\\<>,=()" ')
_REASON_SPECIALS = frozenset("\\=")


def _escaped(text: str, specials: frozenset[str]) -> str:
    return "".join(_escape(char) if char in specials or not char.isprintable() else char for char in text)


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def address(text: str) -> str:
    """An envelope address (or a signer's address or key ID) between angle brackets, escaped."""
    return f"<{_escaped(text.strip().removeprefix('<').removesuffix('>'), _ADDRESS_SPECIALS)}>"


def addresses(texts: Iterable[str]) -> str:
    return ",".join(address(text) for text in texts) or "<>"


def reason(text: str) -> str:
    """A reason in words, escaped, in parentheses (its own parentheses become brackets)."""
    return f"({_escaped(text, _REASON_SPECIALS).replace('(', '[').replace(')', ']')})"


def _format(facts: Facts) -> str | None:
    formats = [name for name, found in (("smime", facts.smime), ("openpgp", facts.pgp))
               if found.encrypted or found.signed]
    return ",".join(formats) or None


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"


def _signature_fields(facts: Facts) -> list[str]:
    """signer=, verified= and (S/MIME only: OpenPGP has no trust anchors here) trusted=, when signed."""
    signed = [found for found in (facts.smime, facts.pgp) if found.signed]
    if not signed:
        return []
    fields = [f"signer={addresses(facts.signers)}"] if facts.signers else []
    fields.append(f"verified={_yes_no(all(found.verified for found in signed))}")
    if facts.smime.signed:
        fields.append(f"trusted={_yes_no(facts.smime.trusted)}")
    return fields


def summary(envelope: Envelope, outcome: Outcome, size: int, new_body: int | None, action: str,
            elapsed_s: float) -> str:
    """The line after the queue ID. ``size``: the message as received; ``new_body``: the size of the body
    that replaced its own, None when it was kept; ``action``: pass, tempfail or reject."""
    verdict = outcome.verdict()
    result = verdict.result.value + (f" {reason(verdict.reason)}" if verdict.reason else "")
    fields = [f"from={address(envelope.mail_from)}", f"to={addresses(envelope.recipients)}", f"result={result}"]
    facts = outcome.facts
    found_format = _format(facts)
    if found_format:
        fields.append(f"format={found_format}")
    if facts.ciphers:
        fields.append(f"cipher={','.join(_escaped(c, _ADDRESS_SPECIALS) for c in dict.fromkeys(facts.ciphers))}")
    fields += _signature_fields(facts)
    fields.append(f"size={size}")
    if new_body is not None:
        fields.append(f"new_body={new_body}")
    fields += [f"action={action}", f"time={elapsed_s * 1000:.1f}ms"]
    return " ".join(fields)
