"""The worker pool: the core in other processes gives what it gives in-process, and survives a dead worker."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import tempfile

from dataclasses import replace

import pytest

from support.attack_messages import SECRET_ENTITY, Tools, message
from ciphermilter.core import pipeline as core
from ciphermilter.daemon import workers
from ciphermilter.core.settings import Limits
from ciphermilter.store.holder import StoreUnavailable
from ciphermilter.store.keystore import KeyStore
from ciphermilter.daemon.workers import DeadlineOverrun, WorkerDied, Workers
from conftest import NO_HARVEST, corpus_store_file
from support.messages import INTERNAL_RECIPIENT, large_smime_message, plain_entity, smime_encrypt

ENVELOPE = core.Envelope(mail_from="alice@sender-pub.example", recipients=[INTERNAL_RECIPIENT])


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    return corpus_store_file(tmp_path_factory.mktemp("store"))


@pytest.fixture(scope="module")
def encrypted(tmp_path_factory):
    return smime_encrypt(plain_entity(b"hello bob\r\n"), tmp_path_factory.mktemp("openssl"))


@pytest.fixture
def pool(store_path):
    workers = Workers(1, str(store_path), str(store_path) + ".key")
    yield workers
    workers.close()


def test_a_worker_decrypts_exactly_as_the_core_does_in_process(pool, store_path, encrypted):
    calls = []
    outcome = pool.process(encrypted, ENVELOPE, NO_HARVEST, lambda: calls.append(1))

    with KeyStore.open(str(store_path)) as store:
        expected = core.process(encrypted, ENVELOPE, store, NO_HARVEST)
    assert outcome.plan.body == expected.plan.body == b"hello bob\r\n"
    assert outcome.plan == expected.plan
    assert list(outcome.info) == list(expected.info)
    # A reply within PROGRESS_INTERVAL sends the MTA no progress packet: one wake-up of the MTA less per message.
    assert calls == []


def test_a_dead_worker_fails_one_message_and_the_next_gets_a_new_worker(pool, encrypted):
    pool.process(encrypted, ENVELOPE, NO_HARVEST, lambda: None)
    for child in multiprocessing.active_children():
        os.kill(child.pid, signal.SIGKILL)
        child.join()

    with pytest.raises(WorkerDied):
        pool.process(encrypted, ENVELOPE, NO_HARVEST, lambda: None)
    assert pool.process(encrypted, ENVELOPE, NO_HARVEST, lambda: None).plan.body == b"hello bob\r\n"


def test_a_worker_without_its_store_says_so(tmp_path, encrypted):
    workers = Workers(1, str(tmp_path / "absent.db"), str(tmp_path / "absent.db.key"))
    try:
        with pytest.raises(StoreUnavailable, match="absent.db"):
            workers.process(encrypted, ENVELOPE, NO_HARVEST, lambda: None)
    finally:
        workers.close()


# --- large messages: the spool file goes to the worker, a large new body comes back as a file ---------

@pytest.fixture(scope="module")
def large(tmp_path_factory) -> bytes:
    return large_smime_message(tmp_path_factory.mktemp("openssl-large"))


def spool_of(message: bytes, spool_memory: int = 1024):
    """The message in a spool like the daemon's, rolled over to disk."""
    spool = tempfile.SpooledTemporaryFile(max_size=spool_memory, prefix="ciphermilter-")
    spool.write(message)
    assert spool.name is not None  # an in-memory spool has no file, hence no name
    return spool


def in_process(message: bytes, store_path) -> core.Outcome:
    with KeyStore.open(str(store_path)) as store:
        return core.process(message, ENVELOPE, store, NO_HARVEST)


@pytest.mark.parametrize("as_file", [True, False], ids=["spool-file", "bytes"])
def test_a_large_new_body_comes_back_as_an_open_file(pool, store_path, large, as_file):
    expected = in_process(large, store_path)
    assert len(large) > 2 * 1024 * 1024 and len(expected.plan.body) > workers.FILE_THRESHOLD

    with spool_of(large) if as_file else contextlib.nullcontext(large) as message:
        outcome = pool.process(message, ENVELOPE, NO_HARVEST, lambda: None)
    body = outcome.plan.body
    try:
        assert not isinstance(body, bytes) and not body.closed
        assert body.read() == expected.plan.body
    finally:
        body.close()
    outcome.plan.body = expected.plan.body
    assert outcome.plan == expected.plan
    assert list(outcome.info) == list(expected.info)


def test_a_small_message_from_a_spool_file_comes_back_as_bytes(pool, encrypted):
    with spool_of(encrypted, spool_memory=16) as spool:
        outcome = pool.process(spool, ENVELOPE, NO_HARVEST, lambda: None)
        assert not spool.closed  # the worker closes its own descriptor, not the daemon's spool
    assert outcome.plan.body == b"hello bob\r\n"


def test_the_pool_goes_on_after_a_large_message(pool, store_path, large, encrypted):
    with spool_of(large) as spool:
        pool.process(spool, ENVELOPE, NO_HARVEST, lambda: None).plan.body.close()
    assert pool.process(encrypted, ENVELOPE, NO_HARVEST, lambda: None).plan.body == b"hello bob\r\n"


# --- the deadline holds: a worker past it is killed and replaced --------------------------------------

# 12,000 RecipientInfos for bob before the real one: about 5 s of RSA operations (0.4 ms each measured) in
# one step of the core, cms.decrypt, which no check between steps interrupts.
DECOYS = 12_000
HURRIED = replace(NO_HARVEST, limits=Limits(deadline_seconds=0.5, max_recipient_infos=DECOYS + 1))


@pytest.fixture(scope="module")
def slow(tmp_path_factory) -> bytes:
    return message(Tools(tmp_path_factory.mktemp("tools")).smime_with_decoys(SECRET_ENTITY, DECOYS))


def worker_pids() -> set[int]:
    return {child.pid for child in multiprocessing.active_children() if child.name == "ciphermilter-worker"}


def test_a_worker_past_the_deadline_is_killed_and_the_next_message_gets_a_new_one(pool, slow, encrypted):
    pool.process(encrypted, ENVELOPE, HURRIED, lambda: None)  # the worker is up
    (first,) = worker_pids()

    with pytest.raises(DeadlineOverrun) as overrun:
        pool.process(slow, ENVELOPE, HURRIED, lambda: None)
    # The worker had found bob's key before it was killed: the message is held (on_limit), not passed.
    assert overrun.value.key_held
    (successor,) = worker_pids()  # the killed one is gone (joined), its successor already started
    assert successor != first

    assert pool.process(encrypted, ENVELOPE, HURRIED, lambda: None).plan.body == b"hello bob\r\n"
    assert worker_pids() == {successor}


def test_without_the_deadline_the_slow_message_decrypts_with_progress_to_the_mta(pool, slow, monkeypatch):
    """The control: the same message given time opens (so the test above can fail). While it takes its
    seconds, the MTA hears progress after every PROGRESS_INTERVAL of waiting (0.5 s here, 10 s in service)."""
    monkeypatch.setattr(workers, "PROGRESS_INTERVAL", 0.5)
    patient = replace(HURRIED, limits=replace(HURRIED.limits, deadline_seconds=600.0))
    calls = []
    outcome = pool.process(slow, ENVELOPE, patient, lambda: calls.append(1))
    assert outcome.plan.body == SECRET_ENTITY.partition(b"\r\n\r\n")[2]
    assert len(calls) >= 2

