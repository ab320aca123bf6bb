"""Faults end to end: the daemon or a worker killed under load, the key store broken or locked, the spool full.

Every case goes through the private Postfix (its fault port: ciphermilter alone,
``default_action=tempfail``) to the sink, and checks the sender's SMTP replies
against what arrived: no message is lost, none is duplicated, none is cut.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import threading
import uuid
from pathlib import Path

import pytest

from e2e.conftest import FAULT_SOCKET, START_TIMEOUT, chown, wait_until
from e2e.faulty import is_running_python
from e2e.load import (
    Ledger,
    Outgoing,
    Tally,
    send,
    send_all,
    send_until_accepted,
    tagged,
)
from support.messages import (
    BOB_CERT,
    INTERNAL_RECIPIENT,
    OPENSSL,
    SENDER,
    plain_entity,
    smime_encrypt,
)

DELIVERY_TIMEOUT = 120.0
BOB_KEY = BOB_CERT.with_name("pub-bob.key.pem")
POLICIES = ["pass", "tempfail"]
# What Postfix answers when a milter with default_action=tempfail dies or cannot be reached.
POSTFIX_TEMPFAIL = (451, "4.7.1 Service unavailable - try again later")
# What ciphermilter answers under on_error = "tempfail".
MILTER_TEMPFAIL = (451, "4.3.0 Message could not be processed now, please try again later")
NOT_PROCESSED = "X-CipherMail-Info-Not-Processed"
ENCRYPTED = b"X-CipherMail-Info-SMIME-Encrypted: True"


def marker(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex}@faults.e2e.test"


def policy_config(policy: str) -> str:
    return f'on_error = "{policy}"\n'


@pytest.fixture
def encrypted(tmp_path):
    """A plaintext entity and the S/MIME message to bob that carries it."""
    entity = plain_entity(b"Faults do not lose mail.\r\n")
    return entity, smime_encrypt(entity, tmp_path)


def deliver_one(postfix, template: bytes, label: str):
    """Send one tagged message through the fault port: (reply, marker)."""
    name = marker(label)
    return send(postfix.fault_port, tagged(template, name), [INTERNAL_RECIPIENT], SENDER), name


def delivered_message(sink, tally, name: str) -> bytes:
    assert tally.wait_for({name}, DELIVERY_TIMEOUT) == set(), f"{name} never reached the sink"
    return next(d.data for d in sink.mailbox.deliveries if f"<{name}>".encode() in d.split()[0])


def assert_decrypted(data: bytes, entity: bytes) -> None:
    head, _, body = data.partition(b"\r\n\r\n")
    assert ENCRYPTED in head.split(b"\r\n")
    assert body == entity.partition(b"\r\n\r\n")[2]


def assert_passed_unchanged(data: bytes, sent: bytes, reason: str) -> None:
    head, _, body = data.partition(b"\r\n\r\n")
    assert f"{NOT_PROCESSED}: {reason}".encode() in head.split(b"\r\n"), head
    assert body == sent.partition(b"\r\n\r\n")[2]


def assert_never_delivered(postfix, tally, name: str) -> None:
    """Called after a later message arrived: the queue is drained and the marker is not in the sink."""
    wait_until(lambda: not postfix.queued(), DELIVERY_TIMEOUT, "Postfix queue drain", postfix.maillog)
    assert tally.update()[name] == 0


# --- SIGKILL under load -------------------------------------------------------------------------------

KILL_MESSAGES = 240
KILL_CONCURRENCY = 8
KILLS = 2
ORPHAN_TIMEOUT = 30.0
# Postfix's warning when the milter died while a transaction waited for its reply (not merely refused to connect).
MID_TRANSACTION = re.compile(re.escape(f"milter unix:{FAULT_SOCKET}: can't read SMFIC_").encode() + rb"\w+ reply")


def kill_batch(template: bytes, label: str) -> list[Outgoing]:
    return [Outgoing(name, tagged(template, name), (INTERNAL_RECIPIENT,))
            for name in (marker(f"{label}{n}") for n in range(KILL_MESSAGES))]


def send_with_faults(postfix, batch: list[Outgoing], faults: list, log) -> Ledger:
    """Send ``batch`` from 8 clients, running the i-th of ``faults`` once i/(n+1) of the replies are in;
    then resend what was tempfailed, as a sending MTA would. Every reply is in the ledger."""
    ledger = Ledger()
    sender = threading.Thread(target=send_all, args=(postfix.fault_port, batch, KILL_CONCURRENCY, SENDER, ledger))
    sender.start()
    try:
        for number, fault in enumerate(faults, 1):
            due = number * len(batch) // (len(faults) + 1)
            wait_until(lambda due=due: ledger.count >= due, DELIVERY_TIMEOUT, "replies before the fault", log)
            fault()
    finally:
        sender.join()
    assert send_until_accepted(postfix.fault_port, batch, KILL_CONCURRENCY, SENDER, ledger) == []
    return ledger


def assert_each_delivered_once(postfix, tally, batch: list[Outgoing]) -> None:
    names = {item.marker for item in batch}
    assert tally.wait_for(names, DELIVERY_TIMEOUT) == set(), "lost"
    wait_until(lambda: not postfix.queued(), DELIVERY_TIMEOUT, "Postfix queue drain", postfix.maillog)
    counts = tally.update()
    assert sorted(n for n in names if counts[n] != 1) == [], "duplicated"


def test_sigkill_under_load_loses_and_duplicates_nothing(postfix, sink, milter_under_test, encrypted):
    """kill -9 the daemon twice while 8 clients send; resend what was tempfailed; count every marker."""
    entity, template = encrypted
    daemon = milter_under_test()
    tally = Tally(sink.mailbox)
    batch = kill_batch(template, "kill")
    maillog_start = postfix.maillog.stat().st_size
    orphans = []

    def kill_and_restart():
        orphans.extend(daemon.kill())
        daemon.start()

    ledger = send_with_faults(postfix, batch, [kill_and_restart] * KILLS, daemon.log)

    failed = [(r.code, r.text) for r in ledger.all_replies() if not r.accepted]
    assert failed, "the kills hit no transaction: nothing was tested"
    # Only Postfix's default_action=tempfail answer, never a 5xx or a broken connection.
    assert set(failed) == {POSTFIX_TEMPFAIL}, set(failed)
    assert MID_TRANSACTION.search(postfix.maillog.read_bytes()[maillog_start:]), "no kill hit a transaction"
    assert_each_delivered_once(postfix, tally, batch)
    assert_decrypted(delivered_message(sink, tally, batch[-1].marker), entity)
    # The killed daemon's workers notice their parent is gone and exit: nothing keeps the store or memory.
    wait_until(lambda: not any(is_running_python(pid) for pid in orphans), ORPHAN_TIMEOUT, "orphaned workers exit")


def test_sigkill_of_a_worker_costs_no_message(postfix, sink, milter_under_test, encrypted):
    """A decryption worker killed under load: its messages get the on_error policy (tempfail), the pool is
    replaced, and the resent messages are decrypted."""
    entity, template = encrypted
    daemon = milter_under_test(policy_config("tempfail"))
    tally = Tally(sink.mailbox)
    batch = kill_batch(template, "worker")

    ledger = send_with_faults(postfix, batch, [daemon.kill_a_worker] * KILLS, daemon.log)

    failed = {(r.code, r.text) for r in ledger.all_replies() if not r.accepted}
    assert failed == {MILTER_TEMPFAIL}, failed
    assert_each_delivered_once(postfix, tally, batch)
    for item in batch:
        assert_decrypted(delivered_message(sink, tally, item.marker), entity)
    assert daemon.service.process.poll() is None, "the daemon died with its worker"


# --- the key store broken and repaired, without a restart ------------------------------------------

def replace_file(path: Path, data: bytes) -> None:
    """Write ``data`` beside ``path`` and rename it over ``path`` (a new inode, as a restored copy would be)."""
    scratch = path.with_name(path.name + ".new")
    scratch.write_bytes(data)
    chown(scratch, "nobody", "postfix")
    scratch.chmod(0o600)
    os.replace(scratch, path)


def store_missing(store: Path):
    moved = store.with_name(store.name + ".moved")
    store.rename(moved)
    return lambda: moved.rename(store)


def store_corrupt(store: Path):
    """Garbage in place of the file. Written as a new file: garbage over the pages of a store the daemon
    has open in WAL mode goes unseen while its pages come from the WAL and the cache."""
    good = store.read_bytes()
    replace_file(store, os.urandom(len(good)))
    return lambda: replace_file(store, good)


def master_key_unreadable(store: Path):
    """chmod 000 on the key file; the store is replaced by a copy of itself, so the daemon must reopen it."""
    key = Path(f"{store}.key")
    key.chmod(0)
    replace_file(store, store.read_bytes())
    return lambda: key.chmod(0o600)


def master_key_removed(store: Path):
    key = Path(f"{store}.key")
    moved = key.with_name(key.name + ".moved")
    key.rename(moved)
    replace_file(store, store.read_bytes())
    return lambda: moved.rename(key)


# fault -> (injector, the reason the daemon must log)
STORE_FAULTS = {
    "missing": (store_missing, r"key store \S+: No such file or directory"),
    "corrupt": (store_corrupt, r"is not a usable ciphermilter store: file is not a database"),
    "master-key-unreadable": (master_key_unreadable, r"cannot read master key file \S+: Permission denied"),
    "master-key-removed": (master_key_removed, r"master key file \S+ not found"),
}


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("fault", list(STORE_FAULTS))
def test_store_fault_applies_on_error_and_recovers_without_restart(postfix, sink, milter_under_test, encrypted,
                                                                   fault, policy):
    entity, template = encrypted
    daemon = milter_under_test(policy_config(policy))
    tally = Tally(sink.mailbox)
    inject, reason = STORE_FAULTS[fault]
    repair = inject(daemon.store)

    reply, broken = deliver_one(postfix, template, f"store-{fault}")

    daemon.wait_for_log(r"ERROR key store unavailable, on_error policy applies: .*" + reason)
    if policy == "pass":
        assert reply.accepted, reply
        assert_passed_unchanged(delivered_message(sink, tally, broken), tagged(template, broken),
                                "key store unavailable")
    else:
        assert (reply.code, reply.text) == MILTER_TEMPFAIL

    repair()
    reply, repaired = deliver_one(postfix, template, f"repaired-{fault}")

    assert reply.accepted, reply
    assert_decrypted(delivered_message(sink, tally, repaired), entity)
    daemon.wait_for_log("WARNING key store .* is usable again")
    assert daemon.service.process.poll() is None, "the daemon was restarted or died"
    if policy == "tempfail":
        assert_never_delivered(postfix, tally, broken)


def test_exclusively_locked_store_keeps_serving(postfix, sink, milter_under_test, encrypted):
    """BEGIN EXCLUSIVE in the sqlite3 shell: the store runs in WAL mode, so readers are not blocked."""
    entity, template = encrypted
    daemon = milter_under_test(policy_config("tempfail"))
    tally = Tally(sink.mailbox)
    with locked_by_another_process(daemon.store):
        reply, name = deliver_one(postfix, template, "store-locked")

        assert reply.accepted, reply
        assert_decrypted(delivered_message(sink, tally, name), entity)
    assert "key store unavailable" not in daemon.log_text()


@contextlib.contextmanager
def locked_by_another_process(store: Path):
    """An admin's sqlite3 shell holding an exclusive write transaction on the store for the block."""
    locker = subprocess.Popen(["sqlite3", str(store)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        # The write makes the lock real (a reserved+pending lock on the database); "locked" shows it is held.
        locker.stdin.write("BEGIN EXCLUSIVE;\nDELETE FROM domains;\nSELECT 'locked';\n")
        locker.stdin.flush()
        assert locker.stdout.readline().strip() == "locked"
        yield
    finally:
        locker.stdin.close()  # end of input: the shell exits and its transaction is rolled back
        locker.wait(START_TIMEOUT)


def smime_sign(content: bytes, workdir: Path) -> bytes:
    """A detached-signed S/MIME message from bob, whose certificate the store holds already."""
    source = workdir / "to-sign.eml"
    source.write_bytes(content)
    result = subprocess.run(
        [OPENSSL, "cms", "-sign", "-in", str(source), "-binary", "-signer", str(BOB_CERT),
         "-inkey", str(BOB_KEY), "-from", INTERNAL_RECIPIENT, "-to", INTERNAL_RECIPIENT, "-subject", "signed"],
        check=True, capture_output=True)
    return result.stdout.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def test_locked_store_does_not_stall_or_fail_signed_mail(postfix, sink, milter_under_test, tmp_path):
    """Verifying a signature offers the signer's certificate to the store; a locked store must not turn
    that optional write into a failed message (nor make it wait for the lock)."""
    daemon = milter_under_test(policy_config("tempfail"))
    tally = Tally(sink.mailbox)
    signed = smime_sign(plain_entity(b"Signed while the admin holds the store.\r\n"), tmp_path)
    with locked_by_another_process(daemon.store):
        reply, name = deliver_one(postfix, signed, "signed-locked")

        assert reply.accepted, reply
        head = delivered_message(sink, tally, name).partition(b"\r\n\r\n")[0].split(b"\r\n")
        assert b"X-CipherMail-Info-Signer-Verified-0-0: True" in head, head
    assert "database is locked" not in daemon.log_text()


# --- spool disk full ----------------------------------------------------------------------------------

SPOOL_SIZE = "1m"
SPOOL_MEMORY = 64 * 1024  # the body goes to disk once it is larger than this


@pytest.fixture
def tiny_spool(e2e_dir):
    """A 1 MiB tmpfs the daemon spools to (through TMPDIR); always unmounted.

    It sits in the world-traversable e2e directory: a TMPDIR the daemon's user
    cannot reach makes tempfile fall back to /tmp without a word.
    """
    mount_point = e2e_dir / f"spool-{uuid.uuid4().hex}"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SPOOL_SIZE},mode=1777", "tmpfs", str(mount_point)],
                   check=True)
    try:
        yield mount_point
    finally:
        if subprocess.run(["umount", str(mount_point)], check=False).returncode:  # busy: detach it lazily
            subprocess.run(["umount", "-l", str(mount_point)], check=True)


@pytest.mark.parametrize("policy", POLICIES)
def test_spool_disk_full_never_passes_a_truncated_message(postfix, sink, tiny_spool, milter_under_test, tmp_path,
                                                          policy):
    daemon = milter_under_test(policy_config(policy) + f"spool_memory = {SPOOL_MEMORY}\n",
                               env={"TMPDIR": str(tiny_spool)})
    tally = Tally(sink.mailbox)
    big = smime_encrypt(plain_entity(b"0123456789abcdef" * 64 * 1024 * 2), tmp_path)  # 2 MiB of text
    assert len(big) > 2 * 1024 * 1024

    reply, name = deliver_one(postfix, big, f"spool-{policy}")

    daemon.wait_for_log(r"cannot spool the message: \[Errno 28\] No space left on device")
    if policy == "pass":
        assert reply.accepted, reply
        assert_passed_unchanged(delivered_message(sink, tally, name), tagged(big, name), "cannot spool the message")
    else:
        assert (reply.code, reply.text) == MILTER_TEMPFAIL
        entity = plain_entity(b"small enough for memory\r\n")
        reply, small = deliver_one(postfix, smime_encrypt(entity, tmp_path), "spool-small")
        assert reply.accepted, reply
        assert_decrypted(delivered_message(sink, tally, small), entity)
        assert_never_delivered(postfix, tally, name)
