"""Why a message passes without inspection: one enum instead of strings compared across five modules.

The pipeline, the milter glue, its workers and the statistics all ask why
a message was skipped; they compare :class:`Skip` members. Its values are
the texts reports, log lines and ``--explain`` show, unchanged: admins grep
for them. A module of its own, importing nothing, because the statistics
(which the configuration still imports) need it too.
"""

from __future__ import annotations

import enum


class Skip(enum.Enum):
    """Why triage let a message pass uninspected; the value is its text in reports, log lines and --explain."""

    NOT_INTERNAL = "no recipient in an internal domain"
    NO_PROTECTABLE_TYPE = "no content type that can be protected"
    STORE_UNAVAILABLE = "key store unavailable"
    TOO_LARGE = "message larger than {max_message_size} bytes"

    def reason(self, max_message_size: int) -> str:
        """The text for this message: TOO_LARGE names the configured bound."""
        return self.value.format(max_message_size=max_message_size)
