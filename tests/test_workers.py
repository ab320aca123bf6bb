"""The worker pool: the core in other processes gives what it gives in-process, and survives a dead worker."""

from __future__ import annotations

import multiprocessing
import os
import signal
import pytest

from ciphermilter import core
from ciphermilter.config import Settings
from ciphermilter.milter import StoreUnavailable
from ciphermilter.store import KeyStore
from ciphermilter.workers import WorkerDied, Workers
from conftest import corpus_store_file
from e2e.messages import INTERNAL_RECIPIENT, plain_entity, smime_encrypt

ENVELOPE = core.Envelope(mail_from="alice@sender-pub.example", recipients=[INTERNAL_RECIPIENT])
SETTINGS = Settings(harvest_certificates=False, harvest_pgp_keys=False)


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
    outcome = pool.process(encrypted, ENVELOPE, SETTINGS, lambda: calls.append(1))

    with KeyStore.open(str(store_path)) as store:
        expected = core.process(encrypted, ENVELOPE, store, SETTINGS)
    assert outcome.plan.body == expected.plan.body == b"hello bob\r\n"
    assert outcome.plan == expected.plan
    assert list(outcome.info) == list(expected.info)
    assert calls, "the MTA must hear progress while a worker has the message"


def test_a_dead_worker_fails_one_message_and_the_next_gets_a_new_worker(pool, encrypted):
    pool.process(encrypted, ENVELOPE, SETTINGS, lambda: None)
    for child in multiprocessing.active_children():
        os.kill(child.pid, signal.SIGKILL)
        child.join()

    with pytest.raises(WorkerDied):
        pool.process(encrypted, ENVELOPE, SETTINGS, lambda: None)
    assert pool.process(encrypted, ENVELOPE, SETTINGS, lambda: None).plan.body == b"hello bob\r\n"


def test_a_worker_without_its_store_says_so(tmp_path, encrypted):
    workers = Workers(1, str(tmp_path / "absent.db"), str(tmp_path / "absent.db.key"))
    try:
        with pytest.raises(StoreUnavailable, match="absent.db"):
            workers.process(encrypted, ENVELOPE, SETTINGS, lambda: None)
    finally:
        workers.close()
