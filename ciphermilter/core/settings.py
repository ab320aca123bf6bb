"""What the core runs with: the limits a message must stay within and the policies for what it finds.

These are plain values with safe defaults (the embedded default store runs
with no file at all); the core, the format engines and the workers read
them, and only :mod:`ciphermilter.config` writes them, from the TOML file.
They live in the core because the core needs them and must import nothing
from the daemon or the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

# The choices of the policy settings; ciphermilter.config refuses anything else in the file.
OnError = Literal["pass", "tempfail"]
OnLimit = Literal["reject", "tempfail", "pass"]
MixedRecipients = Literal["split", "decrypt-for-all"]
ON_ERROR_POLICIES: tuple[OnError, ...] = get_args(OnError)
ON_LIMIT_POLICIES: tuple[OnLimit, ...] = get_args(OnLimit)
MIXED_RECIPIENTS: tuple[MixedRecipients, ...] = get_args(MixedRecipients)


@dataclass
class Limits:
    max_message_size: int = 10_240_000  # bytes, as Postfix's message_size_limit; larger messages pass untouched
    max_mime_depth: int = 50
    max_mime_parts: int = 1000
    max_cms_layers: int = 8
    max_recipient_infos: int = 100
    max_signer_infos: int = 20
    max_chain_length: int = 10
    # OpenPGP compressed data, all of one message's packets together; None: DECOMPRESSED_PER_MESSAGE_SIZE
    # times max_message_size (see decompressed_limit)
    max_decompressed_size: int | None = None
    max_pgp_nesting: int = 8  # OpenPGP compressed packets inside each other, encrypted layers inside each other
    max_rsa_bits: int = 16384
    deadline_seconds: float = 30.0
    # New certificates and keys one message may add to the store: a real signed message brings 1 signer
    # certificate (harvest keeps no chain) and 1-2 attached keys; more is a flood (300 in one message, issue 14).
    max_harvest_per_message: int = 10
    # Harvested certificates and keys kept per address they name: a correspondent renews a certificate or key
    # every year or so, and never-used ones expire; new ones past this are refused, never an older one evicted.
    max_harvest_per_address: int = 10
    # Harvested certificates and keys kept for the addresses of one harvesting signer together: an OpenPGP
    # signer vouches for keys of any of its addresses, so with N user IDs the cap per address alone let it
    # keep 10 x N; an S/MIME signer is its certificate, whose addresses are counted together the same way.
    max_harvest_per_signer: int = 10
    # Reserved-namespace fields (X-CipherMail-, X-Djigzo-) a message may arrive with and still be accepted:
    # each costs Postfix's cleanup one deletion, and deletions are quadratic there (10,000 took 23 s,
    # 20,000 ended in "451 queue file write error"). Above it the message is rejected (triage.forged_flood).
    max_forged_headers: int = 100

    @property
    def decompressed_limit(self) -> int:
        """``max_decompressed_size``, else a multiple of ``max_message_size``: what a message may unpack to
        follows what it may be, so that lowering one lowers the other (10,240,000-byte messages: 40,960,000)."""
        if self.max_decompressed_size is not None:
            return self.max_decompressed_size
        return DECOMPRESSED_PER_MESSAGE_SIZE * self.max_message_size

    def decompression_budget(self, message_size: int) -> int:
        """What one message of ``message_size`` bytes may unpack to, all its compressed data together: in
        proportion to its own size, never above :attr:`decompressed_limit`. A 280 KB bomb unpacking to
        200 MiB (under the 256 MiB limit) held 1.3 GB before; now it is refused after 16 MiB."""
        return min(self.decompressed_limit, max(DECOMPRESSED_FLOOR, DECOMPRESSED_PER_BYTE * message_size))


# Text deflates about 3 to 1: a message of max_message_size holding compressed
# text unpacks to about three times its size; far more is a bomb, not mail.
DECOMPRESSED_PER_MESSAGE_SIZE = 4
# What one message may unpack to per byte it has (Limits.decompression_budget): text deflates 3-5 to 1, logs
# and other repetitive text up to about 20 to 1 of the binary data, about 15 to 1 of the armored text
# (base64 adds a third); zeros deflate 1000 to 1 and bzip2 more. 16 keeps all mail and refuses a bomb early.
DECOMPRESSED_PER_BYTE = 16
# ...but never less than this, whatever the message's size: small messages (a signed note of a few KB)
# may unpack to 16 MiB, which holds little memory (the engine keeps 8 MiB while counting).
DECOMPRESSED_FLOOR = 16 << 20


@dataclass
class Settings:
    internal_domains: list[str] = field(default_factory=list)  # in addition to those in the store
    harvest_certificates: bool = True
    harvest_pgp_keys: bool = True
    harvest_expiry_days: int = 90  # harvested material never used since its harvest is removed after this
    header_protection: bool = True  # restore RFC 9788 protected headers from the decrypted entity
    decrypt_embedded: bool = False  # EFAIL: decrypt parts that sit beside sender-chosen parts
    opaque_to_detached: bool = True  # rewrite opaque signed-data as multipart/signed for the scanners
    on_error: OnError = "pass"  # "pass" (unchanged, with a reason header) or "tempfail"
    # A limit stopped processing of encrypted content the store holds a key for (core.Outcome.held_at_limit):
    # "reject" (554 5.7.0), "tempfail" (451 4.7.0) or "pass" (delivered still encrypted, past the scanners).
    on_limit: OnLimit = "reject"
    # The reader rule (ciphermilter.readers): decrypt only when every internal envelope recipient reads a key
    # the message is encrypted to. Off only for a site that shares one gateway key for everything.
    require_reader: bool = True
    recipient_delimiter: str = ""  # as Postfix's: any of these characters starts a +detail (empty: none)
    # "split" (452 4.5.3 at RCPT, one class per transaction) or "decrypt-for-all"
    mixed_recipients: MixedRecipients = "split"
    limits: Limits = field(default_factory=Limits)
