"""``ciphermilter check`` against real stores and real private Postfix configuration directories (postconf -c)."""

from __future__ import annotations

import datetime
import grp
import json
import os
import sqlite3
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ciphermilter.cli import check
from ciphermilter.cli.main import main
from ciphermilter.formats import keyfiles
from ciphermilter.formats.keyfiles import parse
from ciphermilter.store.keystore import KeyStore
from ciphermilter.store import admin
from conftest import CORPUS, ROOT
from support.installation import private_python, readable_python
from support.milter import start_daemon, stop_daemons

SOCKET = "unix:/var/spool/postfix/ciphermilter/ciphermilter.sock"
OPENDKIM = "{ unix:opendkim/opendkim.sock, default_action=accept }"
CIPHERMILTER = "{ unix:ciphermilter/ciphermilter.sock, default_action=tempfail }"
CLAMAV = "{ unix:clamav/clamav-milter.sock, default_action=tempfail }"
RSPAMD = "inet:127.0.0.1:11332"
UTC = datetime.timezone.utc


@pytest.fixture
def full_store(corpus_store) -> str:
    """The path of a store with every corpus key, the corpus trust anchors and internal domains."""
    return str(corpus_store.path)


@pytest.fixture(scope="module")
def small_store(tmp_path_factory) -> str:
    """A store that passes every store check quickly: an internal domain, a trust anchor and bob's key."""
    path = str(tmp_path_factory.mktemp("check-store") / "ciphermilter.db")
    with KeyStore.create(path) as store:
        admin.add_domain(store, "example.com")
        admin.add_trust_anchors(store, parse((CORPUS / "keys" / "trust" / "pub-root-ca.cert.pem").read_bytes()).certificates)
        admin.import_file(store, (CORPUS / "keys" / "smime" / "pub-bob.p12").read_bytes(), password=b"corpus-public")
    return path


@pytest.fixture
def reachable_directory():
    """A world-traversable directory (pytest's own are 0700): where Postfix's user may reach a socket."""
    path = Path(tempfile.mkdtemp(prefix="ciphermilter-check-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def live_daemon(reachable_directory, full_store):
    """A real daemon on the full store, its socket in group postfix (the documented setup) with mode 0660."""
    daemon = start_daemon(reachable_directory / "daemon", Path(full_store))
    os.chown(daemon.socket, 0, grp.getgrnam("postfix").gr_gid)
    yield daemon
    stop_daemons([daemon])


def postfix_dir(tmp_path, milters: str, extra: str = "") -> str:
    """A Postfix configuration directory as `postconf -c` reads it (main.cf and master.cf)."""
    directory = tmp_path / "postfix"
    directory.mkdir()
    # message_size_limit larger than ciphermilter's default max_message_size (10240000, Postfix's own default):
    # a smaller one is reported by check (test_a_message_size_limit_below_ours_is_a_warning)
    (directory / "main.cf").write_text(f"myhostname = mx.example.com\nqueue_directory = /var/spool/postfix\n"
                                         f"message_size_limit = 67108864\nsmtpd_milters = {milters}\n{extra}")
    (directory / "master.cf").write_text("smtp inet n - y - - smtpd\n")
    for name in ("main.cf", "master.cf"):  # postconf waits while a file is younger than a second (being edited)
        os.utime(directory / name, (0, 0))
    return str(directory)


def config_file(tmp_path, store: str, socket: str = SOCKET, extra: str = "") -> str:
    path = tmp_path / "ciphermilter.toml"
    path.write_text(f'socket = "{socket}"\nstore = "{store}"\n{extra}')
    return str(path)


def run_check(config: str, *args: str, daemon: bool = False):
    """``check`` without the daemon test unless ``daemon``: most tests are about what comes before a start."""
    return CliRunner().invoke(main, ["--config", config, "check", *args, *([] if daemon else ["--no-daemon"])])


def test_a_sound_installation_passes(tmp_path, full_store, live_daemon):
    entry = f"{{ unix:{live_daemon.socket}, default_action=tempfail }}"
    directory = postfix_dir(tmp_path, f"{OPENDKIM}, {entry}, {CLAMAV}, {RSPAMD}", "milter_default_action = tempfail\n")
    config = config_file(tmp_path, full_store, socket=f"unix:{live_daemon.socket}")
    result = run_check(config, "--postfix-config", directory, daemon=True)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("all is well: configuration ")
    assert f"daemon (unix:{live_daemon.socket})" in result.output
    assert f"Postfix ({directory})" in result.output


def _hang_up_after_reading(server: socket.socket) -> None:
    """Accept one connection, read the negotiation, close: closed before it was read, the probe's send could
    meet a reset instead of the end of the stream (seen under load)."""
    conn = server.accept()[0]
    with conn:
        conn.recv(1024)


def test_a_socket_nothing_answers_on_is_an_error(tmp_path):
    """A socket file a killed daemon left behind, a port nothing listens on, a port that is not a milter."""
    leftover = tmp_path / "ciphermilter.sock"
    with socket.socket(socket.AF_UNIX) as left:
        left.bind(str(leftover))
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        dead_port = unused.getsockname()[1]
    other = socket.create_server(("127.0.0.1", 0))
    other_port = other.getsockname()[1]
    hang_up = threading.Thread(target=lambda: _hang_up_after_reading(other))
    hang_up.start()
    try:
        lines = [run_check(config_file(tmp_path, "unused.db", socket=spec), "--no-postfix", daemon=True).output
                 for spec in (f"unix:{leftover}", f"inet:{dead_port}@127.0.0.1",
                              f"inet:{other_port}@localhost")]
    finally:
        hang_up.join()
        other.close()
    advice = ": start the daemon ('systemctl start ciphermilter'); until then Postfix answers every message with 4xx"
    assert f"error: daemon: nothing answers on {leftover} (Connection refused){advice}" in lines[0]
    assert f"error: daemon: nothing answers on 127.0.0.1 port {dead_port} (Connection refused){advice}" in lines[1]
    assert (f"error: daemon: localhost port {other_port} accepts connections but did not negotiate"
            f" (connection closed){advice}") in lines[2]


def test_postfix_must_reach_a_unix_socket(tmp_path, small_store, reachable_directory):
    private = reachable_directory / "private"
    private.mkdir(mode=0o750)
    socket_path = private / "ciphermilter.sock"
    directory = postfix_dir(tmp_path, f"{{ unix:{socket_path}, default_action=tempfail }}")
    result = run_check(config_file(tmp_path, small_store, socket=f"unix:{socket_path}"), "--postfix-config", directory)
    assert result.output.splitlines() == [
        f"error: postfix: Postfix's user postfix cannot reach the milter socket: {private} is mode 0750 root:root;"
        " add postfix to that group ('adduser postfix root') and give the group search permission"]
    os.chown(private, 0, grp.getgrnam("postfix").gr_gid)
    assert run_check(config_file(tmp_path, small_store, socket=f"unix:{socket_path}"), "--postfix-config",
                     directory).exit_code == 0


def test_the_daemon_user_must_reach_the_installation(tmp_path, small_store):
    """Checked as the configured user: an installation under a directory only root enters (issue 17)."""
    config = config_file(tmp_path, small_store, extra='user = "nobody"\ngroup = "postfix"\n')
    command = ["-m", "ciphermilter", "--config", config, "check", "--no-postfix", "--no-daemon"]
    private = private_python(tmp_path / "private")
    refused = subprocess.run([str(private), *command], capture_output=True, text=True, check=False)
    assert refused.stdout.splitlines() == [
        f"error: daemon: the daemon's worker processes cannot start: user nobody cannot run {private} (Permission"
        " denied); let its user read the installation (and enter the directories on the way), or install it"
        " elsewhere"]
    readable = subprocess.run([str(readable_python()), *command], capture_output=True, text=True, check=False)
    assert readable.returncode == 0, readable.stdout
    assert "installation (as user nobody)" in readable.stdout


@pytest.mark.parametrize("postfix_limit, ours, warned", [
    ("10240000", "[limits]\nmax_message_size = 67108864\n", True),  # a decrypted body of 10-64 MB: 552 5.3.4
    ("10240000", "", False),  # both defaults
    ("0", "", False),  # no limit in Postfix
], ids=["ours-larger", "both-defaults", "postfix-unlimited"])
def test_a_message_size_limit_below_ours_is_a_warning(tmp_path, small_store, postfix_limit, ours, warned):
    directory = postfix_dir(tmp_path, CIPHERMILTER, f"message_size_limit = {postfix_limit}\n")
    result = run_check(config_file(tmp_path, small_store, extra=ours), "--postfix-config", directory)
    expected = ("warning: postfix: message_size_limit = 10240000 is below limits.max_message_size (67108864):"
                " Postfix refuses a decrypted body larger than it with '552 5.3.4 message file too big';"
                " set max_message_size = 10240000")
    assert (expected in result.output.splitlines()) == warned, result.output


@pytest.mark.parametrize("milters, extra, expected", [
    (f"{CLAMAV}, {CIPHERMILTER}", "", "error: postfix: clamav (unix:clamav/clamav-milter.sock) runs before"
                                      " ciphermilter and scans ciphertext"),
    (f"{RSPAMD} {CIPHERMILTER}", "", "error: postfix: rspamd (inet:127.0.0.1:11332) runs before ciphermilter"),
    (f"{CIPHERMILTER}, {OPENDKIM}", "", "error: postfix: opendkim (unix:opendkim/opendkim.sock) runs after"
                                        " ciphermilter"),
    (f"{OPENDKIM}, {CLAMAV}", "", "error: postfix: ciphermilter (unix:ciphermilter/ciphermilter.sock) is not in"
                                  " smtpd_milters"),
    ("{ unix:ciphermilter/ciphermilter.sock, default_action=accept }", "",
     "error: postfix: its default_action is 'accept'"),
    ("unix:ciphermilter/ciphermilter.sock", "milter_default_action = accept\n",
     "error: postfix: milter_default_action is 'accept'"),
    (CIPHERMILTER, "milter_protocol = 2\n", "error: postfix: milter_protocol = 2: ciphermilter needs 6"),
    ("{ unix:ciphermilter/ciphermilter.sock, default_action = tempfail }", "",
     "error: postfix: smtpd_milters entry unix:ciphermilter/ciphermilter.sock: write its options as name=value"
     " without spaces"),
], ids=["scanner-first", "rspamd-first-no-comma", "dkim-after", "missing", "accept-per-milter",
        "accept-global", "old-protocol", "spaced-option"])
def test_a_bad_postfix_chain_is_one_clear_line(tmp_path, small_store, milters, extra, expected):
    result = run_check(config_file(tmp_path, small_store), "--postfix-config", postfix_dir(tmp_path, milters, extra))
    assert result.exit_code == 1
    assert [line for line in result.output.splitlines() if line.startswith(expected)], result.output
    assert len(result.output.splitlines()) == 1


def test_per_milter_tempfail_overrides_a_global_accept(tmp_path, small_store):
    directory = postfix_dir(tmp_path, CIPHERMILTER, "milter_default_action = accept\n")
    assert run_check(config_file(tmp_path, small_store), "--postfix-config", directory).exit_code == 0


@pytest.mark.parametrize("socket, milters", [
    ("inet:8891@127.0.0.1", "inet:127.0.0.1:8891"),
    ("inet:8891@127.0.0.1", "inet:localhost:8891"),
    (SOCKET, "unix:/var/spool/postfix/ciphermilter/ciphermilter.sock"),
    (SOCKET, "$cm"),
], ids=["inet", "inet-localhost", "absolute-unix", "expanded-variable"])
def test_postfix_spellings_of_the_same_socket_match(tmp_path, small_store, socket, milters):
    directory = postfix_dir(tmp_path, milters, "cm = unix:ciphermilter/ciphermilter.sock\n"
                                               "milter_default_action = tempfail\n")
    result = run_check(config_file(tmp_path, small_store, socket=socket), "--postfix-config", directory)
    assert result.exit_code == 0, result.output


def test_an_unreadable_postfix_configuration_is_reported(tmp_path, small_store):
    result = run_check(config_file(tmp_path, small_store), "--postfix-config", str(tmp_path / "nowhere"))
    assert result.exit_code == 1
    assert result.output.startswith("error: postfix: cannot read Postfix's settings: ")
    assert "postconf: fatal: open" in result.output
    assert "--no-postfix" in result.output


def test_json_output(tmp_path, small_store):
    directory = postfix_dir(tmp_path, f"{CLAMAV}, {CIPHERMILTER}")
    result = run_check(config_file(tmp_path, small_store), "--postfix-config", directory, "--json")
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert data["ok"] is False
    assert [(f["severity"], f["area"]) for f in data["findings"]] == [("error", "postfix")]
    assert "private keys" in data["checked"]


def test_empty_store_lacks_domains_and_trust_anchors(tmp_path):
    store = str(tmp_path / "empty.db")
    KeyStore.create(store).close()
    result = run_check(config_file(tmp_path, store), "--no-postfix")
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "warning: keys: no private key: no message will be decrypted; import yours with 'ciphermilter keys import"
        " FILE'",
        "warning: trust: no S/MIME trust anchors: every signature will be reported Signer-Trusted: False;"
        " add your CAs' roots with 'ciphermilter trust add ROOT.pem'",
        "error: domains: no internal domain: no message will be decrypted; add yours with"
        " 'ciphermilter domains add example.com' (or internal_domains in the configuration)",
    ]


def test_internal_domains_of_the_configuration_count(tmp_path):
    store = str(tmp_path / "empty.db")
    KeyStore.create(store).close()
    result = run_check(config_file(tmp_path, store, extra='internal_domains = ["example.com"]\n'), "--no-postfix")
    assert "domains" not in result.output


def test_a_wrong_master_key_is_an_error(tmp_path, full_store):
    other = str(tmp_path / "other.db")
    KeyStore.create(other).close()
    result = run_check(config_file(tmp_path, full_store, extra=f'master_key = "{other}.key"\n'), "--no-postfix")
    assert result.exit_code == 1
    assert f"error: store: master key {other}.key does not belong to store {full_store}" in result.output
    assert len(result.output.splitlines()) == 1  # one root cause, one error: not also "no internal domain"


def test_a_missing_store_and_a_bad_configuration_are_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('store = "/nonexistent/ciphermilter.db"\nlog_level = "loud"\n')
    result = run_check(str(bad), "--no-postfix")
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0].startswith(f"error: config: {bad}:2: log_level: must be one of debug, info, warning, error")
    assert lines[1].startswith("error: store: store var/ciphermilter.db not found")  # the defaults stand in
    assert len(lines) == 2  # one root cause, one error: not also "no internal domain"


def test_a_world_readable_master_key_is_a_warning(tmp_path, full_store):
    os.chmod(full_store + ".key", 0o644)
    try:
        result = run_check(config_file(tmp_path, full_store), "--no-postfix")
    finally:
        os.chmod(full_store + ".key", 0o600)
    assert result.exit_code == 1
    assert f"warning: store: master key {full_store}.key is readable by others (mode 0644)" in result.output


def test_own_keys_near_or_past_their_expiry_are_reported(full_store):
    with KeyStore.open(full_store) as store:
        own = [k for k in admin.list_keys(store) if k["type"] == "x509" and k["private_key"]]
    expiry = min(datetime.datetime.fromisoformat(k["not_after"]) for k in own)
    soon = check.run_checks(None, full_store, None, None, False, now=expiry - datetime.timedelta(days=10))
    lines = [f.line() for f in soon.findings]
    assert any(line.startswith("warning: keys: S/MIME certificate ") and
               f"expires on {expiry.date()}: get it renewed" in line for line in lines), lines
    later = check.run_checks(None, full_store, None, None, False, now=expiry + datetime.timedelta(days=1))
    assert any(f.line().startswith("error: keys: S/MIME certificate ") and f"expired on {expiry.date()}" in f.line()
               for f in later.findings)
    fine = check.run_checks(None, full_store, None, None, False,
                            now=expiry - datetime.timedelta(days=check.EXPIRY_WARNING_DAYS + 1))
    assert not [f for f in fine.findings if f.area == "keys" and str(expiry.date()) in f.message]


def test_parse_milters_reads_braces_commas_and_blanks():
    entries = check.parse_milters("{ unix:a.sock, default_action = accept }, inet:h:1 unix:b.sock,{inet:c:2}")
    assert [(e.socket, e.default_action) for e in entries] == [
        ("unix:a.sock", "accept"), ("inet:h:1", None), ("unix:b.sock", None), ("inet:c:2", None)]


def gpg_key_with_expiry(home, primary_expiry: str, subkey_expiry: str) -> bytes:
    """An ed25519 key with a cv25519 subkey, each with its own expiry date, made by GnuPG."""
    gpg = ["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback", "--passphrase", ""]
    home.mkdir(mode=0o700)
    subprocess.run([*gpg, "--quick-gen-key", "Expiring <exp@example.com>", "ed25519", "sign", primary_expiry],
                   check=True, capture_output=True)
    listing = subprocess.run([*gpg, "--with-colons", "--list-keys"], check=True, capture_output=True, text=True)
    fingerprint = next(line.split(":")[9] for line in listing.stdout.splitlines() if line.startswith("fpr:"))
    subprocess.run([*gpg, "--quick-add-key", fingerprint, "cv25519", "encr", subkey_expiry],
                   check=True, capture_output=True)
    return subprocess.run([*gpg, "--armor", "--export-secret-keys"], check=True, capture_output=True).stdout


def test_openpgp_key_and_subkey_expiry_are_reported(tmp_path):
    store_path = str(tmp_path / "ciphermilter.db")
    with KeyStore.create(store_path) as store:
        admin.import_file(store, gpg_key_with_expiry(tmp_path / "gnupg", "2031-01-01", "2030-06-01"))
        admin.add_domain(store, "example.com")
    report = check.run_checks(None, store_path, None, None, False,
                              now=datetime.datetime(2030, 5, 20, tzinfo=UTC))
    keys = [f.line() for f in report.findings if f.area == "keys"]
    assert len(keys) == 1 and keys[0].startswith("warning: keys: OpenPGP subkey ")
    assert "expires on 2030-06-01" in keys[0]
    report = check.run_checks(None, store_path, None, None, False,
                              now=datetime.datetime(2031, 1, 2, tzinfo=UTC))
    keys = [f.line() for f in report.findings if f.area == "keys"]
    assert len(keys) == 2 and all(" expired on " in line for line in keys)
    assert keys[0].startswith("error: keys: OpenPGP key ") and "expired on 2031-01-01" in keys[0]


def test_a_private_key_the_master_key_cannot_open_is_an_error(tmp_path):
    store_path = str(tmp_path / "ciphermilter.db")
    with KeyStore.create(store_path) as store:
        admin.import_file(store, (CORPUS / "keys" / "smime" / "pub-bob.p12").read_bytes(), password=b"corpus-public")
        admin.add_domain(store, "example.com")
    with sqlite3.connect(store_path) as conn:  # what a tampered or half-restored row looks like
        conn.execute("UPDATE smime_keys SET sealed = zeroblob(64)")
    conn.close()
    lines = [f.line() for f in check.run_checks(None, store_path, None, None, False).findings]
    assert "error: keys: 1 private key(s) do not open with the master key (altered in the store?): the log names" \
           " them; import them again" in lines


def test_findings_are_coloured_on_a_terminal_only(tmp_path, small_store):
    command = [str(ROOT / ".venv" / "bin" / "ciphermilter"), "--config", config_file(tmp_path, small_store),
               "check", "--no-daemon", "--postfix-config", postfix_dir(tmp_path, f"{CLAMAV}, {CIPHERMILTER}")]
    primary, secondary = os.openpty()
    with subprocess.Popen(command, stdout=secondary, stderr=subprocess.PIPE) as process:
        os.close(secondary)
        assert process.wait() == 1
    on_terminal = os.read(primary, 65536)
    os.close(primary)
    assert on_terminal.startswith(b"\x1b[31merror\x1b[0m: postfix: ")
    piped = subprocess.run(command, capture_output=True)
    assert piped.returncode == 1 and piped.stdout.startswith(b"error: postfix: ")


def test_an_openpgp_key_that_makes_no_usable_key_is_reported_at_import_and_by_check(tmp_path):
    """Issue 16: a key the engine cannot use is named at import and by check, never found out by a message."""
    from ciphermilter.formats.openpgp import keys
    from ciphermilter.formats.openpgp.packets import frame

    vectors = Path(__file__).parent / "vectors" / "openpgp-keys"
    (good,) = keyfiles.parse((vectors / "gpg-p256.sec.asc").read_bytes()).pgp_keys
    p256, secp256k1 = bytes.fromhex("082a8648ce3d030107"), bytes.fromhex("052b8104000a")
    changed = b"".join(frame(tag, body.replace(p256, secp256k1) if tag == keys.TAG_SECRET_SUBKEY else body)
                       for tag, body in keys.parse_key(good.to_bytes()).packets)
    store_path = str(tmp_path / "ciphermilter.db")
    with KeyStore.create(store_path) as store:
        result = admin.import_file(store, changed)
        admin.add_domain(store, "corp-pub.example")
    assert any("unsupported curve (OID 1.3.132.0.10): it will not be used" in w for w in result.warnings)
    lines = [f.line() for f in check.run_checks(None, store_path, None, None, False).findings]
    assert any(line.startswith(f"error: keys: OpenPGP key {good.fingerprint}: subkey ")
               and "unsupported curve (OID 1.3.132.0.10): messages to it cannot be decrypted" in line
               for line in lines), lines


def certificate_with_key(key, usage: x509.KeyUsage | None, purposes: list | None) -> tuple[bytes, bytes]:
    """A self-signed certificate for carol@example.com (PEM) and its private key (PEM), with these usages."""
    name = x509.Name([x509.NameAttribute(NameOID.EMAIL_ADDRESS, "carol@example.com")])
    now = datetime.datetime.now(UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
               .not_valid_after(now + datetime.timedelta(days=365))
               .add_extension(x509.SubjectAlternativeName([x509.RFC822Name("carol@example.com")]), critical=False))
    if usage is not None:
        builder = builder.add_extension(usage, critical=True)
    if purposes is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(purposes), critical=False)
    digest = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    certificate = builder.sign(key, digest)
    secret = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())
    return certificate.public_bytes(serialization.Encoding.PEM), secret


def key_usage(**granted) -> x509.KeyUsage:
    flags = dict.fromkeys(("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
                           "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only"), False)
    return x509.KeyUsage(**{**flags, **granted})


@pytest.mark.parametrize("key, usage, purposes, problem", [
    (rsa.generate_private_key(65537, 2048), key_usage(digital_signature=True), None,
     "its key usage lacks keyEncipherment"),
    (ec.generate_private_key(ec.SECP256R1()), key_usage(digital_signature=True), None,
     "its key usage lacks keyAgreement"),
    (rsa.generate_private_key(65537, 2048), key_usage(key_encipherment=True), [ExtendedKeyUsageOID.SERVER_AUTH],
     "its extended key usage lacks emailProtection"),
    (ed25519.Ed25519PrivateKey.generate(), None, None, "Ed25519 keys sign only"),
], ids=["rsa-signing-usage", "ec-signing-usage", "server-certificate", "ed25519"])
def test_an_smime_key_that_can_never_decrypt_is_listed_with_the_reason(tmp_path, key, usage, purposes, problem):
    store_path = str(tmp_path / "ciphermilter.db")
    with KeyStore.create(store_path) as store:
        admin.import_file(store, b"".join(certificate_with_key(key, usage, purposes)))
        admin.add_domain(store, "example.com")
    lines = [f.line() for f in check.run_checks(None, store_path, None, None, False).findings if f.area == "keys"]
    assert lines == [f"error: keys: S/MIME certificate 1.2.840.113549.1.9.1=carol@example.com: {problem}: messages"
                     " to it cannot be decrypted; remove it ('ciphermilter keys remove') and import a certificate"
                     " issued for e-mail encryption"]


def test_an_smime_key_for_e_mail_encryption_passes(tmp_path):
    store_path = str(tmp_path / "ciphermilter.db")
    with KeyStore.create(store_path) as store:
        admin.import_file(store, b"".join(certificate_with_key(
            rsa.generate_private_key(65537, 2048), key_usage(key_encipherment=True, digital_signature=True),
            [ExtendedKeyUsageOID.EMAIL_PROTECTION])))
        admin.add_domain(store, "example.com")
    assert [f for f in check.run_checks(None, store_path, None, None, False).findings if f.area == "keys"] == []
