"""``keys list`` and ``keys show`` as an admin reads them: like ``gpg --list-keys``, with real keys made by
gpg (an expired one, a revoked one) beside the corpus's."""

from __future__ import annotations

import json
import subprocess

import pytest
from click.testing import CliRunner

from ciphermilter.cli.main import main
from conftest import CORPUS

KEYS = CORPUS / "keys"
PAST = "20200101T000000!"  # gpg's --faked-system-time: a key made then, valid one day, has long expired


def gpg(home, *args, input: bytes | None = None) -> bytes:
    return subprocess.run(["gpg", "--homedir", str(home), "--batch", "--yes", "--pinentry-mode", "loopback",
                           "--passphrase", "", *args], input=input, check=True, capture_output=True).stdout


@pytest.fixture(scope="module")
def gpg_keys(tmp_path_factory):
    """Public keys exported by gpg: one expired (made in 2020, valid a day), one revoked by its owner."""
    home = tmp_path_factory.mktemp("gnupg")
    home.chmod(0o700)
    try:
        gpg(home, "--faked-system-time", PAST, "--quick-gen-key", "Old <old@corp-pub.example>", "ed25519", "default",
            "1d")
        gpg(home, "--quick-gen-key", "Gone <gone@corp-pub.example>", "rsa2048", "default", "never")
        fingerprint = next(line.split(":")[9] for line in gpg(home, "--with-colons", "--list-keys",
                                                                "gone@corp-pub.example").decode().splitlines()
                           if line.startswith("fpr:"))
        revocation = (home / "openpgp-revocs.d" / f"{fingerprint}.rev").read_text()
        revocation = revocation.replace(":-----BEGIN", "-----BEGIN")  # gpg defuses it with a colon
        gpg(home, "--import", input=revocation.encode())
        expired, revoked = tmp_path_factory.mktemp("keys") / "old.asc", tmp_path_factory.mktemp("keys") / "gone.asc"
        expired.write_bytes(gpg(home, "--armor", "--export", "old@corp-pub.example"))
        revoked.write_bytes(gpg(home, "--armor", "--export", "gone@corp-pub.example"))
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False)
    return expired, revoked


@pytest.fixture
def cli(tmp_path):
    store = str(tmp_path / "store.db")

    def run(*args, expect: int = 0, input: str | None = None):
        result = CliRunner().invoke(main, ["--store", store, *map(str, args)], input=input)
        assert result.exit_code == expect, (result.output, result.stderr)
        return result

    run("store", "init")
    return run


@pytest.fixture
def listed(cli, gpg_keys):
    cli("keys", "import", KEYS / "smime/pub-bob.p12", "--password", "corpus-public",
        KEYS / "foreign/pub-oliver-expired.cert.pem", KEYS / "smime/pub-erin-p256.cert.pem",
        KEYS / "pgp/pub-pgp-bob-rsa3072.sec.asc", KEYS / "pgp/pub-pgp-wes-v6.pub.asc", *gpg_keys)
    return cli


def rows(text: str) -> dict[str, list[str]]:
    """The listing's rows by the e-mail column, split on the runs of blanks between columns."""
    lines = text.splitlines()
    header = lines[0].split()
    assert header == ["ID", "KIND", "ALGORITHM", "CREATED", "EXPIRES", "HOLDS", "E-MAIL", "READERS", "MARKS"]
    starts = [lines[0].index(name) for name in header]
    table = {}
    for line in lines[1:]:
        cells = [line[start:end].strip() for start, end in zip(starts, starts[1:] + [None])]
        table[cells[6]] = cells
    return table


def test_keys_list_is_a_table_like_gpg_list_keys(listed):
    table = rows(listed("keys", "list").stdout)
    assert table["bob@corp-pub.example"][1:4] == ["x509", "rsa2048", table["bob@corp-pub.example"][3]]
    assert table["bob@corp-pub.example"][5] == "private"
    assert table["erin@corp-pub.example"][1:3] == ["x509", "nistp256"]
    assert table["erin@corp-pub.example"][5] == "imported"
    assert table["oliver@sender-pub.example"][3:5] == ["2020-01-01", "2021-01-01"]
    assert table["oliver@sender-pub.example"][8] == "[expired]"
    assert table["bob.pgp@corp-pub.example"][1:3] == ["pgp v4", "rsa3072"]
    assert table["bob.pgp@corp-pub.example"][4:6] == ["never", "private"]
    assert table["wes.v6@corp-pub.example"][1] == "pgp v6"
    assert table["old@corp-pub.example"][2:5] == ["ed25519", "2020-01-01", "2020-01-02"]
    assert table["old@corp-pub.example"][8] == "[expired]"
    assert table["gone@corp-pub.example"][2] == "rsa2048" and table["gone@corp-pub.example"][8] == "[revoked]"
    marked = ("oliver@sender-pub.example", "old@corp-pub.example", "gone@corp-pub.example")
    assert {row[8] for email, row in table.items() if email not in marked} == {""}


def test_one_field_says_the_store_holds_the_private_key_for_both_kinds(listed):
    keys = json.loads(listed("keys", "list", "--json").stdout)
    held = {key["emails"][0] for key in keys if key["private_key"]}
    assert held == {"bob@corp-pub.example", "bob.pgp@corp-pub.example"}
    assert all(key["secret"] == key["private_key"] for key in keys if key["type"] == "openpgp")  # the old name
    assert all({"algorithm", "created", "expires", "expired", "revoked"} <= key.keys() for key in keys)


def test_keys_show_takes_an_address(listed):
    shown = listed("keys", "show", "Bob@Corp-Pub.example").stdout
    assert "type: x509" in shown and "private_key: True" in shown and "algorithm: rsa2048" in shown
    both = json.loads(listed("keys", "show", "<oliver@sender-pub.example>", "--json").stdout)
    assert [key["type"] for key in both] == ["x509"] and both[0]["expired"] is True
    result = listed("keys", "show", "nobody@corp-pub.example", expect=1)
    assert result.stderr == "ciphermilter: no key of nobody@corp-pub.example\n"


def test_an_empty_store_lists_nothing(cli):
    assert cli("keys", "list").stdout == ""


def test_keys_import_reads_a_dash_as_standard_input(cli):
    """``keys import -`` takes the key from a pipe, as the README's walkthrough gives it (``gpg --export | ...``)."""
    key = (KEYS / "pgp/pub-pgp-alice-ed25519.pub.asc").read_text()
    cli("keys", "import", "-", input=key)
    assert "alice" in cli("keys", "list").output
