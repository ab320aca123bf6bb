"""Importing the package changes no global state (issue 15), and no entry point installs a warnings filter since
the OpenPGP engine stopped going through pgpy (issue 16): the CLI, an embedding program and the daemon's workers
verify quietly all the same.

Each check runs in a fresh interpreter: pytest's own filters (pyproject.toml) would hide what an admin sees.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from conftest import CORPUS, case_message, corpus_cases, corpus_store_file

PGP_SIGNED = corpus_cases(lambda case: case["smime_or_pgp"] == "pgp" and case["signed"]
                          and case["signature_should_verify"])[0]
RECIPIENT = "bob@corp-pub.example"


def python(code: str, cwd) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=True)


def test_importing_every_module_installs_no_warnings_filter(tmp_path):
    result = python("""
        import pkgutil, warnings
        before = list(warnings.filters)
        import ciphermilter
        for module in pkgutil.walk_packages(ciphermilter.__path__, "ciphermilter."):
            if module.name != "ciphermilter.__main__":
                __import__(module.name)
        print(warnings.filters == before)
    """, tmp_path)
    assert result.stdout.strip() == "True"


def test_verification_is_quiet_even_without_the_entry_points_filter(tmp_path):
    """Issue 16: signatures are verified by our own engine, no longer by pgpy, whose warnings on every
    verification were the reason the filter exists: embedded without it, a verification writes nothing."""
    store = corpus_store_file(tmp_path)
    result = python(f"""
        from ciphermilter.core.settings import Settings
        from ciphermilter.core import pipeline
        from ciphermilter.store.keystore import KeyStore
        with KeyStore.open({str(store)!r}) as store:
            pipeline.process(open({str(CORPUS / PGP_SIGNED["message_file"])!r}, "rb").read(),
                             pipeline.Envelope(mail_from="a@sender-pub.example", recipients=[{RECIPIENT!r}]),
                             store, Settings())
    """, tmp_path)
    assert result.stderr == ""


def test_the_cli_verifies_quietly(tmp_path):
    store = corpus_store_file(tmp_path)
    result = subprocess.run([sys.executable, "-m", "ciphermilter", "--store", str(store), "decrypt", "--rcpt", RECIPIENT,
                             "-"], input=case_message(PGP_SIGNED), cwd=tmp_path, capture_output=True, timeout=120)
    assert result.returncode == 0
    assert result.stderr == b""


def test_a_worker_verifies_quietly(tmp_path):
    store = corpus_store_file(tmp_path)
    result = python(f"""
        from ciphermilter.core.settings import Settings
        from ciphermilter.core.pipeline import Envelope
        from ciphermilter.daemon.workers import Workers
        pool = Workers(1, {str(store)!r}, {str(store) + ".key"!r})
        try:
            pool.process(open({str(CORPUS / PGP_SIGNED["message_file"])!r}, "rb").read(),
                         Envelope(mail_from="a@sender-pub.example", recipients=[{RECIPIENT!r}]), Settings(),
                         lambda: None)
        finally:
            pool.close()
    """, tmp_path)
    assert result.stderr == ""
