"""Driving one message through the real daemon and through ``ciphermilter decrypt``, to compare the two: the
MTA side (tests/support/milter.py) replays the daemon's replies on the message as Postfix would
(``plan.apply_plan``); a refusal is compared by its SMTP reply. Shared by tests/test_agreement.py (the corpus)
and tests/test_smime_modern.py (today's senders)."""

from __future__ import annotations

from pathlib import Path

import miltertest
from click.testing import CliRunner

from ciphermilter.cli.main import main
from ciphermilter.core.plan import EditPlan, HeaderAdd, HeaderChange, HeaderDelete, apply_plan
from support.milter import SENDER, Daemon, Mta

ACCEPTED = (None, (miltertest.SMFIR_CONTINUE, {}))

# What a message came to: ("delivered", the message Postfix queues) or ("refused", the SMTP reply).
Result = tuple[str, bytes | str]


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


