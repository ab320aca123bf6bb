"""The daemon and ``ciphermilter decrypt`` agree on every message, byte for byte.

Both promise that what an admin sees offline is what the milter does. Each
corpus message (and a decrypted header that is not UTF-8, which the daemon
once refused alone) goes through the real daemon, driven as Postfix drives
it (the MTA of tests/support/milter.py), and through ``ciphermilter decrypt`` with
the same configuration, store and accepted recipients. The daemon's replies
are replayed on the message as Postfix would (``plan.apply_plan``); a
refusal is compared by its SMTP reply.
"""

from __future__ import annotations

from pathlib import Path

import miltertest
import pytest
from click.testing import CliRunner

from ciphermilter import mime
from ciphermilter.cli.main import main
from ciphermilter.core.plan import EditPlan, HeaderAdd, HeaderChange, HeaderDelete, apply_plan
from conftest import case_envelope, case_message, corpus_cases
from support.messages import smime_encrypt
from support.milter import SENDER, Daemon, Mta

# The daemon is driven through miltertest, which must carry bytes (support/milter_fixtures.py).
pytestmark = pytest.mark.usefixtures("bytes_on_the_wire")

CASES = corpus_cases()
# Content whose Content-Disposition holds a raw Latin-1 byte: libmilter carries UTF-8 header values only.
LATIN1_ENTITY = (b"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n"
                 b"Content-Disposition: attachment; filename=\"caf\xe9.txt\"\r\n\r\ncaf\xe9 cr\xe8me\r\n")
ACCEPTED = (None, (miltertest.SMFIR_CONTINUE, {}))

# What a message came to: ("delivered", the message Postfix queues) or ("refused", the SMTP reply).
Result = tuple[str, bytes | str]


@pytest.fixture(scope="module")
def daemon(daemons, store_file) -> Daemon:
    return daemons("agreement", store_file)


def through_the_daemon(daemon: Daemon, message: bytes, recipients: list[str]) -> tuple[Result, list[str]]:
    """What the daemon makes of ``message``, and the recipients it accepted (split: one class per transaction)."""
    client = Mta(daemon.socket)
    try:
        rcpt_replies = client.envelope(SENDER, [f"<{r}>" for r in recipients])[1:]
        accepted = [r for r, reply in zip(recipients, rcpt_replies) if reply in ACCEPTED]
        head, _, body = message.partition(b"\r\n\r\n")
        client.headers(head)
        eoh = client.eoh()
        if eoh[0] == miltertest.SMFIR_ACCEPT:
            return ("delivered", message), accepted
        if eoh[0] != miltertest.SMFIR_CONTINUE:
            return ("refused", _reply_text(eoh)), accepted
        client.body(body)
        return _replayed(message, client.eom()), accepted
    finally:
        client.close()


def _replayed(message: bytes, replies: list) -> Result:
    """The end-of-message replies as the EditPlan they carry, applied to ``message`` as Postfix would."""
    plan = EditPlan()
    body = []
    for action, args in replies:
        if action == miltertest.SMFIR_REPLYCODE:
            return "refused", _reply_text((action, args))
        if action == miltertest.SMFIR_CHGHEADER and not args["value"]:
            plan.deletions.append(HeaderDelete(args["name"], args["index"]))
        elif action == miltertest.SMFIR_CHGHEADER:
            plan.changes.append(HeaderChange(args["name"], args["index"], args["value"].removeprefix(" ")))
        elif action == miltertest.SMFIR_ADDHEADER:
            plan.additions.append(HeaderAdd(args["name"], args["value"].removeprefix(" ")))
        elif action == miltertest.SMFIR_REPLBODY:
            body.append(args["buf"])
    plan.deletions.reverse()  # the daemon sends them in replay order, highest index first
    plan.body = b"".join(body) if body else None
    return "delivered", apply_plan(message, plan)


def _reply_text(reply: tuple) -> str:
    _, args = reply
    return f"{args['smtpcode']} {args['text']}"


def through_decrypt(daemon: Daemon, message: bytes, recipients: list[str], directory: Path) -> Result:
    """What ``ciphermilter decrypt`` shows for ``message`` with the daemon's configuration and store."""
    path = directory / "message.eml"
    path.write_bytes(message)
    options = [option for recipient in recipients for option in ("--rcpt", recipient)]
    result = CliRunner().invoke(main, ["--config", str(daemon.config), "decrypt", *options, str(path)])
    refused = [line for line in result.stderr.splitlines()
               if line.startswith(("ciphermilter: rejected: ", "ciphermilter: tempfail: "))]
    if refused:  # exit status 3 (decrypt.EXIT_REFUSED); the message written is the one on_limit = "pass" delivers
        assert result.exit_code == 3
        return "refused", refused[0].split(": ", 2)[2]
    return "delivered", result.stdout_bytes


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_the_daemon_and_decrypt_agree_on_every_corpus_message(daemon, case, tmp_path):
    message = case_message(case)
    by_daemon, accepted = through_the_daemon(daemon, message, case_envelope(case).recipients)

    assert through_decrypt(daemon, message, accepted, tmp_path) == by_daemon


@pytest.mark.parametrize("recipient", ["bob@corp-pub.example", "zed@elsewhere-pub.example"], ids=["internal", "external"])
def test_a_message_past_max_message_size_gets_the_same_answer_from_both(daemon, recipient, tmp_path):
    """The daemon learns the size while it reads the body, and reads it only for internal recipients."""
    padding = b"x" * 76 + b"\r\n"
    entity = b"Content-Type: text/plain\r\n\r\n" + padding * (10_300_000 // len(padding))
    message = smime_encrypt(entity, tmp_path)
    by_daemon, accepted = through_the_daemon(daemon, message, [recipient])

    assert through_decrypt(daemon, message, accepted, tmp_path) == by_daemon
    kind, delivered = by_daemon
    assert isinstance(delivered, (bytes, str))
    if recipient.endswith("elsewhere-pub.example"):
        assert by_daemon == ("delivered", message)
    else:  # held at the limit (bob reads the key): on_limit's default refuses it
        assert kind == "refused" and "message larger than" in str(delivered)


def test_a_decrypted_header_that_is_not_utf8_is_refused_by_both(daemon, tmp_path):
    """libmilter cannot carry the value: the message passes still encrypted, offline as in the daemon."""
    message = smime_encrypt(LATIN1_ENTITY, tmp_path)
    by_daemon, accepted = through_the_daemon(daemon, message, ["bob@corp-pub.example"])

    assert through_decrypt(daemon, message, accepted, tmp_path) == by_daemon
    kind, delivered = by_daemon
    assert kind == "delivered" and isinstance(delivered, bytes)
    added = {header.name: " ".join(header.value.split()) for header in mime.split_headers(delivered)[0]}
    reason = "header Content-Disposition of the decrypted content is not UTF-8"
    assert added["X-CipherMail-Info-Not-Processed"] == reason
