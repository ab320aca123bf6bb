"""Tests of the key store against the corpus keys."""

from __future__ import annotations

from conftest import corpus_cases


def test_corpus_store_holds_every_decryption_key(corpus_store):
    assert len(corpus_store.all_smime_private_keys()) == 4
    assert len(corpus_store.all_pgp_secret_keys()) == 5
