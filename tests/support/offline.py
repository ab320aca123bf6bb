"""``ciphermilter decrypt`` as an admin runs it, for the attack suites: its output, and the Info headers in it."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from ciphermilter.cli.main import main
from ciphermilter.core.info import INFO_PREFIX
from ciphermilter.mime import split_headers


def decrypt_output(store: Path, message: bytes, rcpt: str, directory: Path) -> bytes:
    """What ``ciphermilter --store STORE decrypt --rcpt RCPT`` writes for ``message`` (exit status 0 asserted)."""
    eml = directory / "message.eml"
    eml.write_bytes(message)
    result = CliRunner().invoke(main, ["--store", str(store), "decrypt", "--rcpt", rcpt, str(eml)])
    assert result.exit_code == 0, result.output
    return result.stdout_bytes


def info_headers(output: bytes) -> dict[str, str]:
    """The X-CipherMail-Info headers of ``output``, by name without the prefix."""
    return {h.name[len(INFO_PREFIX):]: h.value.strip() for h in split_headers(output)[0]
            if h.name.startswith(INFO_PREFIX)}
