"""What the core decided for one message, and the few ways to say it: processed, not processed, refused.

Split out of the pipeline so that the daemon's glue, its workers and
``ciphermilter decrypt`` build every "not processed" outcome with the one
constructor here (:func:`not_processed`) instead of by hand, and turn an
outcome into an SMTP reply with the one function here (:func:`refusal`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ciphermilter import mime
from ciphermilter.core.findings import Facts, Failure, Report
from ciphermilter.core.settings import Settings
from ciphermilter.core.info import InfoHeaders, printable
from ciphermilter.core.plan import EditPlan, HeaderAdd, HeaderChange
from ciphermilter.core.result import Result, Verdict, of_facts
from ciphermilter.core.triage import Envelope, Skip, Triage, forged_header_deletions

NOT_PROCESSED = "Not-Processed"

# The start of Outcome.error when the core caught a bug of ours (an exception); every other error is a decision
# (a decrypted header libmilter cannot carry) that the daemon's on_error policy applies to the same way.
INTERNAL_ERROR = "internal error"


@dataclass
class Outcome:
    plan: EditPlan
    info: InfoHeaders
    report: Report
    error: str | None = None  # set when processing failed for a reason of ours (the daemon's on_error applies)
    reject: str | None = None  # set when the message must be refused (554 5.7.0) for this reason; the plan is empty
    # The limit's reason when a limit stopped processing of encrypted content the store holds a key for
    # (pipeline.stopped_at_limit): the daemon's on_limit policy applies, the plan is the one for "pass".
    held_at_limit: str | None = None
    facts: Facts = field(default_factory=Facts)  # what ``ciphermilter stats`` counts (core.findings)
    # The result when the content was not inspected, set by the constructor that says why; None: the
    # handlers' facts decide it (verdict()).
    stopped: Verdict | None = None

    def verdict(self) -> Verdict:
        """The result of the message (core/result.py): the log line's ``result=`` and the metrics' label."""
        return self.stopped or of_facts(self.facts)


def reject_reply(reason: str) -> tuple[str, str, str]:
    """The SMTP reply for a refused message: what the daemon answers and ``ciphermilter decrypt`` shows."""
    return "554", "5.7.0", f"Message rejected: {reason}"


def refusal(outcome: Outcome, settings: Settings) -> tuple[str, str, str] | None:
    """The SMTP reply that refuses the message instead of passing it on, or None to pass it.

    The one place that turns an outcome and the policies into a reply: the
    daemon answers it, ``ciphermilter decrypt`` shows it. A forged-header
    flood is always refused; content held at a limit follows ``on_limit``
    ("pass" delivers it still encrypted, with its Not-Processed reason).
    """
    if outcome.reject:
        return reject_reply(outcome.reject)
    if outcome.held_at_limit and settings.on_limit == "reject":
        return "554", "5.7.0", f"Encrypted content could not be inspected: {outcome.held_at_limit}"
    if outcome.held_at_limit and settings.on_limit == "tempfail":
        return "451", "4.7.0", f"Encrypted content could not be inspected now ({outcome.held_at_limit}), please try again later"
    return None


def rejected(reason: str, envelope: Envelope, forged: int) -> Outcome:
    """The outcome for a message refused with 554 5.7.0: nothing to edit, nothing to report in headers."""
    report: Report = {"queue_id": envelope.queue_id, "rejected": reason, "forged_headers": forged}
    return Outcome(plan=EditPlan(), info=InfoHeaders(), report=report, reject=reason,
                   stopped=Verdict(Result.REJECTED, reason))


def skipped(verdict: Triage, envelope: Envelope, reason: str) -> Outcome:
    """The outcome for a message triage let pass uninspected (not internal, no protectable type): forged
    headers stripped, nothing added."""
    report: Report = {"queue_id": envelope.queue_id, "skipped": reason}
    not_internal = verdict.skip is Skip.NOT_INTERNAL
    return Outcome(plan=EditPlan(deletions=list(verdict.deletions)), info=InfoHeaders(), report=report,
                   facts=_NOT_INTERNAL if not_internal else _NOTHING_COUNTED,
                   stopped=_NOT_INTERNAL_VERDICT if not_internal else _PLAIN_VERDICT)


# The facts and verdicts of a skipped message, built once: they are frozen, and building a Facts cost 0.7 us
# (6 fields set through object.__setattr__) on the path of every message for an external recipient.
_NOT_INTERNAL = Facts(not_internal=True)
_NOTHING_COUNTED = Facts()
_NOT_INTERNAL_VERDICT = Verdict(Result.NOT_INTERNAL)
_PLAIN_VERDICT = Verdict(Result.PLAIN)


def not_processed(headers: mime.HeaderList, reason: str, envelope: Envelope, result: Result,
                  error: str | None = None, report: Report | None = None) -> Outcome:
    """The outcome for a message passed on as received: forged headers stripped, the reason added.

    ``headers`` are the message's top-level fields, already parsed; ``result`` says why in one word.
    """
    info = InfoHeaders()
    info.add(NOT_PROCESSED, reason)
    plan = EditPlan(deletions=forged_header_deletions(headers), additions=[HeaderAdd(n, v) for n, v in info])
    report = {**(report or {}), "queue_id": envelope.queue_id, "skipped": reason}
    facts = Facts(not_processed=True, failures=(Failure.of(NOT_PROCESSED, reason),))
    # The log line's reason is the error when there is one: the cause (a store's "Permission denied") where
    # the header only says "key store unavailable".
    return Outcome(plan=plan, info=info, report=report, error=error, facts=facts,
                   stopped=Verdict(result, printable(error or reason)))


def non_utf8_header(plan: EditPlan) -> str | None:
    """Name of a header value libmilter cannot carry, or None.

    pymilter passes values as UTF-8 text, so raw 8-bit bytes from a decrypted
    entity (kept as surrogates) cannot reach the MTA as they are; sending the
    rest without them would leave headers that no longer describe the body.
    The core refuses such a plan itself (pipeline), so that the daemon and
    ``ciphermilter decrypt`` agree.
    """
    edits: list[HeaderChange | HeaderAdd] = [*plan.changes, *plan.additions]
    for edit in edits:
        try:
            edit.value.encode("utf-8")
        except UnicodeEncodeError:
            return edit.name
    return None
