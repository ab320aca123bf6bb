"""The key-management commands, driven like an admin would: every corpus key, every failure."""

from __future__ import annotations

import json
import os
import re
import select
import stat
import subprocess

import pytest
from click.testing import CliRunner

from ciphermilter.cli.main import main
from conftest import CORPUS, ROOT, corpus_key_files, corpus_secrets, dump

PASSWORDS, PASSPHRASES = corpus_secrets()
V6_FILES = {"keys/pgp/pub-pgp-wes-v6.pub.asc", "keys/pgp/pub-pgp-wes-v6.sec.asc"}


class Admin:
    """Runs ``ciphermilter --store DB ...`` in a CliRunner; stderr kept apart from stdout."""

    def __init__(self, db):
        self.db = str(db)
        self.runner = CliRunner()

    def __call__(self, *args, expect: int = 0, store: str | None = None):
        result = self.runner.invoke(main, ["--store", store or self.db, *map(str, args)])
        assert result.exit_code == expect, (result.output, result.stderr, result.exception)
        return result

    def keys(self, store: str | None = None) -> list[dict]:
        return json.loads(self("keys", "list", "--json", store=store).stdout)


def secret_args(relative: str) -> list[str]:
    args = []
    if relative in PASSWORDS:
        args += ["--password", PASSWORDS[relative].decode()]
    if relative in PASSPHRASES:
        args += ["--passphrase", PASSPHRASES[relative]]
    return args


def refuse(admin: Admin, *args, message: str):
    """The command fails with one line on stderr naming the problem, and the store is exactly as it was."""
    before = dump(admin.db)
    result = admin(*args, expect=1)
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("ciphermilter: "), result.stderr
    assert message in result.stderr, result.stderr
    assert dump(admin.db) == before
    return result


@pytest.fixture
def admin(tmp_path):
    admin = Admin(tmp_path / "var" / "store.db")
    result = admin("store", "init")
    assert "created store" in result.stdout and "keep a copy apart" in result.stdout
    return admin


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """A store filled through the CLI with every corpus key, the trust anchors and the domains."""
    admin = Admin(tmp_path_factory.mktemp("cli") / "store.db")
    admin("store", "init")
    for path in corpus_key_files():
        admin("keys", "import", path, *secret_args(str(path.relative_to(CORPUS))))
    for path in sorted((CORPUS / "keys" / "trust").iterdir()):
        admin("trust", "add", path)
    for domain in ("corp-pub.example", "*.corp-pub.example"):
        admin("domains", "add", domain)
    return admin


# ---------------------------------------------------------------------------- init and the master key


def test_init_creates_private_files(admin):
    for path in (admin.db, admin.db + ".key"):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert os.path.getsize(admin.db + ".key") == 32


def test_init_refuses_an_existing_store(admin):
    key = open(admin.db + ".key", "rb").read()
    refuse(admin, "store", "init", message="exists already")
    assert open(admin.db + ".key", "rb").read() == key


def test_missing_or_wrong_master_key_is_refused(admin, tmp_path):
    refuse(admin, "--master-key", tmp_path / "none.key", "keys", "list", message="none.key not found")
    (tmp_path / "other.key").write_bytes(os.urandom(32))
    refuse(admin, "--master-key", tmp_path / "other.key", "domains", "add", "x.example",
           message="does not belong to store")
    os.rename(admin.db + ".key", tmp_path / "moved.key")
    refuse(admin, "domains", "add", "x.example", message="store.db.key not found")
    assert not os.path.exists(admin.db + ".key")  # never a new key over an existing store


# ---------------------------------------------------------------------------- keys


def test_every_corpus_key_is_listed(loaded):
    keys = loaded.keys()
    assert sum(key["type"] == "x509" for key in keys) == 12
    assert sum(key["type"] == "x509" and key["private_key"] for key in keys) == 4
    assert sum(key["type"] == "openpgp" for key in keys) == 10
    assert sum(key["type"] == "openpgp" and key["secret"] for key in keys) == 6
    text = loaded("keys", "list").stdout
    assert len(text.splitlines()) == len(keys) + 1  # and the header row
    assert re.search(r"^84386E32596E0994  x509 +rsa2048 .* private +bob@corp-pub\.example ", text, re.M)


@pytest.mark.parametrize("relative", sorted(V6_FILES))
def test_v6_key_imports_and_keys_list_shows_its_version(admin, relative):
    admin("keys", "import", CORPUS / "keys/pgp/pub-pgp-bob-rsa3072.pub.asc", CORPUS / relative)
    listing = admin("keys", "list").stdout
    assert re.search(r"  pgp v6 .* (imported|private) +wes\.v6@corp-pub\.example ", listing)
    assert re.search(r"  pgp v4 +rsa3072 .* imported +bob\.pgp@corp-pub\.example ", listing)


def test_duplicate_import_says_already_present(loaded):
    path = CORPUS / "keys/smime/pub-bob.p12"
    before = dump(loaded.db)
    result = loaded("keys", "import", path, "--password", "corpus-public")
    assert "already present: certificate" in result.stdout and "added" not in result.stdout
    assert dump(loaded.db) == before


def test_secrets_from_files(admin, tmp_path):
    (tmp_path / "pw").write_text("corpus-public\n")
    (tmp_path / "pp").write_text("correct horse battery staple\n")
    result = admin("keys", "import", CORPUS / "keys/smime/pub-erin-p256.p12", "--password-file", tmp_path / "pw",
                   CORPUS / "keys/pgp/pub-pgp-erin-cv25519.sec.asc", "--passphrase-file", tmp_path / "pp")
    assert result.stdout.count("added:") == 3


def test_import_no_longer_warns_about_aead_features(admin):
    """Keys that advertise SEIPDv2 or LibrePGP AEAD import without a warning: the engine decrypts those."""
    result = admin("keys", "import", CORPUS / "keys/pgp/pub-pgp-vic-v4-seq2.sec.asc")
    assert "added: OpenPGP secret key 66B59ABE8F986C31F236F7853A8DCE7A0B10086E" in result.stdout
    assert "warning" not in result.stderr


FAILURES = [
    ("key without certificate", ["keys/smime/pub-bob.key.pem"], [], "private key without its certificate"),
    ("wrong password", ["keys/smime/pub-bob.p12"], ["--password", "nope"], "wrong PKCS#12 password"),
    ("no password", ["keys/smime/pub-bob.p12"], [], "password protected: give its password (--password"),
    ("no passphrase", ["keys/pgp/pub-pgp-erin-cv25519.sec.asc"], [], "give its passphrase (--passphrase"),
    ("wrong passphrase", ["keys/pgp/pub-pgp-erin-cv25519.sec.asc"], ["--passphrase", "x"], "wrong passphrase"),
    ("one bad file among good ones", ["keys/smime/pub-bob.cert.pem", "keys/smime/pub-erin-p256.key.pem"], [],
     "pub-erin-p256.key.pem: private key without its certificate"),
    ("not a key", ["index.json"], [], "index.json: unknown format"),
]


@pytest.mark.parametrize("name, files, args, message", FAILURES, ids=[f[0] for f in FAILURES])
def test_refused_imports(admin, name, files, args, message):
    admin("domains", "add", "corp-pub.example")
    refuse(admin, "keys", "import", *[CORPUS / f for f in files], *args, message=message)


def test_truncated_file(admin, tmp_path):
    data = (CORPUS / "keys/smime/pub-bob.p12").read_bytes()
    (tmp_path / "cut.p12").write_bytes(data[:700])
    refuse(admin, "keys", "import", tmp_path / "cut.p12", "--password", "corpus-public",
           message="cut.p12: truncated or corrupt DER data")


def test_show_remove_and_export(admin, tmp_path):
    admin("keys", "import", CORPUS / "keys/smime/pub-bob.p12", "--password", "corpus-public",
          CORPUS / "keys/pgp/pub-pgp-bob-rsa3072.sec.asc")
    (cert,) = [k for k in admin.keys() if k["type"] == "x509"]
    shown = json.loads(admin("keys", "show", cert["id"][:10], "--json").stdout)
    assert shown == cert and shown["emails"] == ["bob@corp-pub.example"]
    assert "key_ids: 7135474EBE209041, 8A351CCB200DA75B" in admin("keys", "show", "8A351CCB200DA75B").stdout

    admin("keys", "export", cert["id"][:10], "--format", "p12", "--password", "pw", "-o", tmp_path / "bob.p12")
    assert stat.S_IMODE(os.stat(tmp_path / "bob.p12").st_mode) == 0o600
    pem = admin("keys", "export", cert["id"][:10], "--format", "pem").stdout
    assert pem.startswith("-----BEGIN CERTIFICATE-----") and "PRIVATE" not in pem
    armored = admin("keys", "export", "7135474EBE209041", "--format", "openpgp", "--secret", "--password", "pw").stdout
    assert armored.startswith("-----BEGIN PGP PRIVATE KEY BLOCK-----")
    refuse(admin, "keys", "export", "7135474EBE209041", "--format", "p12", "--password", "pw",
           message="export it with --format openpgp")
    refuse(admin, "keys", "export", cert["id"][:10], "--format", "pem", "-o", tmp_path / "bob.p12",
           message="exists already")

    # round trip: remove, then import what was exported
    admin("keys", "remove", cert["id"][:10])
    admin("keys", "remove", "E97C6CC22ACC850F")
    assert admin.keys() == []
    refuse(admin, "keys", "remove", "E97C6CC22ACC850F", message="no key E97C6CC22ACC850F")
    refuse(admin, "keys", "show", "zz", message="not a key ID")
    (tmp_path / "bob.asc").write_text(armored)
    admin("keys", "import", tmp_path / "bob.p12", "--password", "pw", tmp_path / "bob.asc", "--passphrase", "pw")
    assert [k["id"] for k in admin.keys()] == [cert["id"], "E97C6CC22ACC850FFBCF941C7135474EBE209041"]


# ---------------------------------------------------------------------------- trust anchors and domains


def test_trust_anchors(admin):
    result = admin("trust", "add", CORPUS / "keys/trust/pub-root-ca.cert.pem")
    assert "added: trust anchor CN=Corpus Public Test Root CA" in result.stdout
    assert "already present" in admin("trust", "add", CORPUS / "keys/trust/pub-root-ca.cert.pem").stdout
    (anchor,) = json.loads(admin("trust", "list", "--json").stdout)
    refuse(admin, "trust", "add", CORPUS / "keys/smime/pub-bob.p12", message="password protected")
    refuse(admin, "trust", "add", CORPUS / "keys/pgp/pub-pgp-bob-rsa3072.pub.asc", message="certificates only")
    admin("trust", "remove", anchor["id"][:8])
    assert json.loads(admin("trust", "list", "--json").stdout) == []
    refuse(admin, "trust", "remove", anchor["id"][:8], message="no trust anchor")


def test_domains(admin):
    admin("domains", "add", "Corp-Pub.Example")
    assert "already present" in admin("domains", "add", "corp-pub.example").stdout
    admin("domains", "add", "*.corp-pub.example")
    assert json.loads(admin("domains", "list", "--json").stdout) == ["*.corp-pub.example", "corp-pub.example"]
    refuse(admin, "domains", "add", "not a domain", message="not a domain name")
    refuse(admin, "domains", "remove", "other.example", message="no domain other.example")
    admin("domains", "remove", "*.corp-pub.example")
    assert admin("domains", "list").stdout == "corp-pub.example\n"


# ---------------------------------------------------------------------------- store maintenance


def test_info(loaded):
    info = json.loads(loaded("store", "info", "--json").stdout)
    assert info["counts"]["smime_keys"] == 4 and info["integrity"] == "ok" and info["schema_version"] == 4


def test_backup_and_restore(loaded, tmp_path):
    backup = tmp_path / "backup.db"
    result = loaded("store", "backup", backup)
    assert "master key is NOT in the backup" in result.stdout.replace("\n", " ")
    target = str(tmp_path / "restored.db")
    with open(loaded.db + ".key", "rb") as fh:
        (tmp_path / "restored.db.key").write_bytes(fh.read())
    loaded("store", "restore", backup, store=target)
    assert loaded.keys(store=target) == loaded.keys()
    before = dump(target)
    result = loaded("store", "restore", backup, store=target, expect=1)
    assert "give --force" in result.stderr and dump(target) == before
    loaded("store", "restore", backup, "--force", store=target)
    assert dump(target) == before


def test_export_and_import_into_a_fresh_store(loaded, tmp_path):
    loaded("store", "export", tmp_path / "all.json", "--password", "moving")
    assert stat.S_IMODE(os.stat(tmp_path / "all.json").st_mode) == 0o600
    fresh = Admin(tmp_path / "fresh.db")
    fresh("store", "init")
    refuse(fresh, "store", "import", tmp_path / "all.json", "--password", "wrong", message="wrong export password")
    refuse(fresh, "store", "import", tmp_path / "all.json", message="give its password")
    refuse(fresh, "keys", "import", tmp_path / "all.json", message="read it with 'ciphermilter store import'")
    fresh("store", "import", tmp_path / "all.json", "--password", "moving")

    def comparable(keys):
        return [{k: v for k, v in key.items() if k != "added"} for key in keys]
    assert comparable(fresh.keys()) == comparable(loaded.keys())
    for listing in (["trust", "list"], ["domains", "list"]):
        assert fresh(*listing).stdout == loaded(*listing).stdout


def test_export_needs_a_password(loaded, tmp_path):
    result = loaded("store", "export", tmp_path / "all.json", expect=1)
    assert "give the export password" in result.stderr and not (tmp_path / "all.json").exists()


def test_installed_command(tmp_path):
    """The console script works outside CliRunner, from the environment variable."""
    env = {**os.environ, "CIPHERMILTER_STORE": str(tmp_path / "s.db")}
    command = [str(ROOT / ".venv" / "bin" / "ciphermilter")]
    subprocess.run([*command, "store", "init"], env=env, check=True, capture_output=True)
    done = subprocess.run([*command, "domains", "add", "bad domain"], env=env, capture_output=True, text=True)
    assert done.returncode == 1 and done.stderr == "ciphermilter: not a domain name: 'bad domain'\n"


def run_on_terminal(args: list[str], env: dict, answers: dict[bytes, bytes]) -> tuple[int, bytes]:
    """Run the command on a pseudo-terminal, answering each prompt that ends in a key of ``answers``."""
    master, slave = os.openpty()
    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    output = b""
    while True:
        ready, _, _ = select.select([master], [], [], 120)
        if not ready:  # a hung prompt: fail rather than wait for ever
            proc.kill()
            break
        try:
            chunk = os.read(master, 1024)
        except OSError:  # EIO: the command exited and closed the terminal
            break
        if not chunk:
            break
        output += chunk
        for prompt, answer in list(answers.items()):
            if output.rstrip().endswith(prompt):
                os.write(master, answer + b"\n")
                del answers[prompt]
    os.close(master)
    return proc.wait(), output


def test_prompts_for_a_missing_passphrase_on_a_terminal(tmp_path):
    env = {**os.environ, "CIPHERMILTER_STORE": str(tmp_path / "s.db")}
    command = str(ROOT / ".venv" / "bin" / "ciphermilter")
    subprocess.run([command, "store", "init"], env=env, check=True, capture_output=True)
    path = CORPUS / "keys/pgp/pub-pgp-erin-cv25519.sec.asc"
    code, output = run_on_terminal([command, "keys", "import", str(path)], env,
                                   {b"passphrase:": b"correct horse battery staple"})
    assert code == 0, output
    assert b"added: OpenPGP secret key D6A4B878E48E7C9C2433D03BEF6ED1366E98B114" in output
    assert b"correct horse" not in output  # the answer is not echoed


def test_a_progress_bar_shows_for_many_files_on_a_terminal_only(tmp_path):
    env = {**os.environ, "CIPHERMILTER_STORE": str(tmp_path / "s.db")}
    command = str(ROOT / ".venv" / "bin" / "ciphermilter")
    subprocess.run([command, "store", "init"], env=env, check=True, capture_output=True)
    files = sorted(str(p) for p in (CORPUS / "keys" / "pgp").glob("*.pub.asc") if "v6" not in p.name)
    assert len(files) >= 5
    code, output = run_on_terminal([command, "keys", "import", *files], env, {})
    assert code == 0, output
    assert b"Reading keys" in output and output.count(b"added: OpenPGP public key") == len(files)
    piped = subprocess.run([command, "--store", str(tmp_path / "t.db"), "store", "init"], env=env, capture_output=True)
    assert piped.returncode == 0
    piped = subprocess.run([command, "--store", str(tmp_path / "t.db"), "keys", "import", *files], env=env,
                           capture_output=True, text=True)
    assert piped.returncode == 0 and "Reading keys" not in piped.stdout + piped.stderr
