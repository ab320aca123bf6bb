"""``ciphermilter decrypt``: the milter's pipeline, offline, on one message.

Admins use it to answer "why was this message not decrypted?": it runs
exactly what the daemon runs and writes the resulting message to stdout and,
with ``--explain``, a JSON report of what was found. Inspecting a suspicious
message must not change what the daemon trusts or knows, so the store is
opened read-only and nothing is harvested unless ``--harvest`` asks for it.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import BinaryIO

import click

from ciphermilter import files
from ciphermilter.mime import write
from ciphermilter.cli.common import fail, open_settings, open_store, to_json
from ciphermilter.core import pipeline
from ciphermilter.core.outcome import refusal
from ciphermilter.core.plan import apply_plan
from ciphermilter.core.triage import Envelope

# Exit status when the daemon would not take the message as processed (1 is a processing failure): it
# refuses a forged-header flood (554 5.7.0: nothing is written), or a limit stopped the inspection of
# encrypted content the store holds a key for and on_limit applies (by default a 554 5.7.0 too; the
# message written is the one on_limit = "pass" delivers).
EXIT_REFUSED = 3


def as_smtp_lines(message: bytes) -> bytes:
    """Give a file saved with LF line ends the CRLF form Postfix hands a milter.

    A file that already holds CRLF is left alone: it may carry binary
    (``Content-Transfer-Encoding: binary``) bytes that must not change.
    """
    return message if b"\r\n" in message else write.to_crlf(message)


@click.command("decrypt")
@click.option("--rcpt", "recipients", multiple=True, metavar="ADDR",
              help="Envelope recipient (repeatable); the reader rule decrypts only for these. Without one, the"
                   " message counts as internal but is decrypted for nobody (unless require_reader is false).")
@click.option("--explain", is_flag=True, help="Write a JSON report of what was found to stderr.")
@click.option("--explain-file", type=click.Path(dir_okay=False), metavar="FILE",
              help="Write the JSON report to FILE instead (mode 0600, also when FILE already exists).")
@click.option("--harvest", is_flag=True,
              help="Save signer certificates and keys into the store as the daemon would; without it the store"
                   " is only read.")
@click.argument("message_file", type=click.File("rb"), metavar="FILE|-")
@click.pass_context
def decrypt(ctx: click.Context, recipients: tuple[str, ...], explain: bool, explain_file: str | None, harvest: bool,
            message_file: BinaryIO) -> None:
    """Run the milter's pipeline on FILE and write the resulting message to stdout.

    \b
    Examples:
      ciphermilter decrypt --explain message.eml > decrypted.eml
      ciphermilter decrypt --rcpt bob@example.com - < message.eml
    """
    store = open_store(ctx, read_only=not harvest)
    settings = open_settings(ctx)
    if not harvest:
        settings = dataclasses.replace(settings, harvest_certificates=False, harvest_pgp_keys=False)
    try:
        message = as_smtp_lines(message_file.read())
    except OSError as exc:
        fail(f"cannot read {message_file.name}: {exc.strerror}")
    envelope = Envelope(recipients=list(recipients))
    outcome = pipeline.process(message, envelope, store, settings)  # triage included, as the daemon takes it
    if not outcome.reject:  # a refused message has no result: the daemon passes nothing on
        sys.stdout.buffer.write(apply_plan(message, outcome.plan))
        sys.stdout.buffer.flush()
    if explain or explain_file:
        report = {"headers": outcome.info.as_dict(), "error": outcome.error, **outcome.report}
        _write_report(to_json(report) + "\n", explain_file)
    reply = refusal(outcome, settings)
    if reply:
        fail(("rejected: " if reply[0].startswith("5") else "tempfail: ") + " ".join(reply), EXIT_REFUSED)
    if outcome.error:
        sys.exit(1)
    if outcome.held_at_limit:  # on_limit = "pass": delivered as written, still encrypted
        sys.exit(EXIT_REFUSED)


def _write_report(text: str, path: str | None) -> None:
    """The JSON report to standard error, or to ``path``: it may name recipients, so the file is made 0600."""
    if path is None:
        sys.stderr.write(text)
        return
    try:
        with open(path, "w", encoding="utf-8", opener=files.private_opener) as fh:
            fh.write(text)
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror}")
