"""From: and the signer (ciphermilter.sender): what a reader sees in From: is what the rule reads."""

from __future__ import annotations

import pytest

from ciphermilter.formats.sender import from_names_signer

SIGNER = "sigrid@sender-pub.example"
CEO_WORD = "=?utf-8?q?ceo=40corp-pub.example?="  # readers show "ceo@corp-pub.example"


@pytest.mark.parametrize("beside", [
    "=?x-unknown?q?a?=",  # a charset no decoder knows: make_header gives up on the whole field
    "=?utf-8?b?!!!?=",  # not base64
    "=?utf-8?q?=FF?=",  # not UTF-8
], ids=["unknown-charset", "bad-base64", "bad-utf8"])
def test_an_undecodable_word_does_not_hide_an_address_beside_it(beside):
    assert not from_names_signer([f"{SIGNER} ({CEO_WORD} {beside})"], [SIGNER])


def test_an_address_split_over_two_encoded_words_is_seen():
    """RFC 2047 section 6.2: white space between adjacent encoded words is not shown."""
    assert not from_names_signer([f"{SIGNER} (=?utf-8?q?ceo=40?= =?x-unknown?q?corp-pub.example?=)"], [SIGNER])


@pytest.mark.parametrize("value", [
    f"=?utf-8?q?Sigrid_M=C3=BCller?= <{SIGNER}>",
    f"{SIGNER} (=?x-unknown?q?M=FCller?=)",  # a word in an unknown charset alone shows no address
    f"{SIGNER} (=?utf-8?q?{SIGNER.replace('@', '=40')}?=)",  # the signer's own address in the comment
])
def test_encoded_names_without_another_address_name_the_signer(value):
    assert from_names_signer([value], [SIGNER])
