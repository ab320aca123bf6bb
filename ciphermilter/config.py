"""Settings of the core and the daemon.

:class:`Settings` holds every knob with its safe default; the embedded
default store runs with no file at all. Loading and validating the TOML file
lives here too, so that the CLI and the daemon refuse the same mistakes.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Limits:
    max_message_size: int = 64 * 1024 * 1024  # bytes; larger messages pass untouched
    max_mime_depth: int = 50
    max_mime_parts: int = 1000
    max_cms_layers: int = 8
    max_recipient_infos: int = 100
    max_signer_infos: int = 20
    max_chain_length: int = 10
    max_decompressed_size: int = 256 * 1024 * 1024  # OpenPGP compressed data, CMS CompressedData
    max_rsa_bits: int = 16384
    deadline_seconds: float = 30.0


@dataclass
class Settings:
    internal_domains: list[str] = field(default_factory=list)  # in addition to those in the store
    harvest_certificates: bool = True
    harvest_pgp_keys: bool = True
    header_protection: bool = True  # restore RFC 9788 protected headers from the decrypted entity
    decrypt_embedded: bool = False  # EFAIL: decrypt parts that sit beside sender-chosen parts
    opaque_to_detached: bool = True  # rewrite opaque signed-data as multipart/signed for the scanners
    on_error: str = "pass"  # "pass" (unchanged, with a reason header) or "tempfail"
    limits: Limits = field(default_factory=Limits)
