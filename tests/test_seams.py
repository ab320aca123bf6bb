"""The key store fits the seams the core names (ciphermilter.core.seams).

mypy checks the fit statically (store/keystore.py assigns a KeyStore to a
KeyLookup under TYPE_CHECKING, and the test suite runs mypy --strict); this
test says the same at run time, so that a renamed method or parameter fails
here with its name even where mypy is not run.
"""

from __future__ import annotations

import inspect

import pytest

from ciphermilter.core import seams
from ciphermilter.core.harvest import Harvester
from ciphermilter.store.keystore import KeyStore

SEAMS = (seams.PgpKeys, seams.SmimeKeys, seams.Readers, Harvester)


def protocol_members(protocol: type) -> list[str]:
    return [name for name, value in vars(protocol).items() if inspect.isfunction(value) and not name.startswith("_")]


@pytest.mark.parametrize("protocol", SEAMS, ids=lambda protocol: protocol.__name__)
def test_the_key_store_has_every_method_of_the_seam(protocol):
    for name in protocol_members(protocol):
        wanted = inspect.signature(getattr(protocol, name))
        actual = inspect.signature(getattr(KeyStore, name))
        assert [(p.name, p.kind) for p in actual.parameters.values()] == \
               [(p.name, p.kind) for p in wanted.parameters.values()], f"KeyStore.{name} misfits {protocol.__name__}"


def test_key_lookup_is_every_seam_together():
    assert set(seams.KeyLookup.__mro__) >= set(SEAMS)
