"""Issue 13 items 3 and 5 through the daemon behind a real Postfix: the attack messages of
tests/attack_messages.py, delivered with exactly the headers the core plans and, where the
ciphertext is beside sender-chosen content, the body exactly as sent."""

from __future__ import annotations

import pytest

from support.attack_messages import ATTACKS, NEVER, SECRET, Tools
from ciphermilter.core import pipeline as core
from ciphermilter.core.info import INFO_PREFIX
from conftest import BOB
from e2e.load import header_fields
from support.messages import INTERNAL_RECIPIENT
from support.chain import OURS, delivered, submit, unfolded, without_trace

@pytest.fixture(scope="module")
def tools(tmp_path_factory) -> Tools:
    return Tools(tmp_path_factory.mktemp("attacker"))


@pytest.mark.parametrize("build, expected, body_kept", [a[1:] for a in ATTACKS], ids=[a[0] for a in ATTACKS])
def test_attack_is_delivered_with_the_planned_headers(postfix, sink, corpus_store, tools, request, build, expected,
                                                      body_kept):
    attack = build(tools)
    planned = core.process(attack, BOB, corpus_store)  # the daemon's store holds the same corpus keys

    head, body = delivered(sink, submit(postfix.port, attack, [INTERNAL_RECIPIENT])).split()

    fields = without_trace(header_fields(head))
    ours = dict(unfolded(f) for f in fields if OURS.match(f))
    assert ours == planned.info.as_dict()
    short = {name[len(INFO_PREFIX):]: value for name, value in ours.items()}
    assert expected.items() <= short.items()
    assert not set(NEVER.get(request.node.callspec.id, ())) & set(short)
    assert SECRET not in head + body
    sent_head, _, sent_body = attack.partition(b"\r\n\r\n")
    if body_kept:
        assert body == sent_body
        assert [f for f in fields if not OURS.match(f)] == header_fields(sent_head)
