"""The fixtures of the milter-level tests, a pytest plugin registered by tests/conftest.py (``pytest_plugins``):
miltertest carrying bytes, the corpus store, the daemons started for a module and stopped with it."""

from __future__ import annotations

from pathlib import Path

import pytest
from miltertest import codec

from conftest import corpus_store_file
from support.messages import plain_entity, smime_encrypt
from support.milter import Daemon, decode_str, encode_str, start_daemon, stop_daemons


@pytest.fixture
def bytes_on_the_wire(monkeypatch):
    """Let miltertest carry bytes: bodies as they are, header values with non-UTF-8 bytes as surrogates.

    miltertest encodes buffers and strings as strict UTF-8, which cannot send a
    binary body or a Latin-1 header, and the daemon must handle exactly those. Not autouse: the modules
    that talk to the daemon ask for it in their ``pytestmark``.
    """
    monkeypatch.setitem(codec.codectypes, "buf", (lambda value: value, lambda data: (data, b"")))
    monkeypatch.setitem(codec.codectypes, "str", (encode_str, decode_str))


@pytest.fixture(scope="module")
def encrypted(tmp_path_factory) -> bytes:
    """An S/MIME message to bob (whose key the store holds), made with openssl."""
    return smime_encrypt(plain_entity(b"hello bob\r\n"), tmp_path_factory.mktemp("openssl"))


@pytest.fixture(scope="module")
def store_file(tmp_path_factory) -> Path:
    return corpus_store_file(tmp_path_factory.mktemp("store"))


@pytest.fixture(scope="module")
def daemons(tmp_path_factory):
    started: list[Daemon] = []

    def start(name: str, store: Path, extra: str = "", max_file_size: int | None = None,
              harvest: bool = False) -> Daemon:
        daemon = start_daemon(tmp_path_factory.mktemp(name), store, extra, max_file_size, harvest)
        started.append(daemon)
        return daemon

    yield start
    stop_daemons(started)
