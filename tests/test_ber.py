"""The BER reader that lifts the ciphertext out of a CMS (Auth)EnvelopedData.

Checked against asn1crypto's full parse on every enveloped structure of the
corpus, on BER re-encodings of openssl's vectors (indefinite lengths, the
ciphertext in pieces, nested pieces) that must still decrypt, and on hostile
input, which must give None so that asn1crypto's full parse decides.
"""

from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass

import pytest
from asn1crypto import cms as asn1_cms
from asn1crypto import core as asn1_core
from asn1crypto import parser

from ciphermilter.formats.smime import ber

from ciphermilter.formats.smime import cms
from conftest import corpus_cases
from support.cms_vectors import CONTENT, ENVELOPED_CASES, PemKeys, der, enveloped_ders

LIFTED = tuple(asn1_core.ObjectIdentifier(oid).contents for oid in (cms.ENVELOPED_DATA, cms.AUTH_ENVELOPED_DATA))
CASE_IDS = [case["id"] for case in ENVELOPED_CASES]


def full_parse(data: bytes):
    """asn1crypto's strict parse of a whole (Auth)EnvelopedData: (content, encrypted content info)."""
    info = asn1_cms.ContentInfo.load(data, strict=True)
    content = info["content"]
    encrypted = content["encrypted_content_info" if "encrypted_content_info" in content else
                        "auth_encrypted_content_info"]
    encrypted.native  # noqa: B018  parses every field, the ciphertext included
    return content, encrypted


@pytest.mark.parametrize("case", ENVELOPED_CASES, ids=CASE_IDS)
def test_lifted_content_is_what_asn1crypto_reads_and_the_hollow_keeps_the_rest(case):
    for data in enveloped_ders(case):
        lifted = ber.lift_encrypted_content(data, LIFTED)
        try:
            content, encrypted = full_parse(data)
        except ValueError:  # the truncated case: the reader must not accept what asn1crypto refuses
            assert lifted is None
            continue
        assert lifted is not None
        hollow, pieces = lifted
        assert all(piece.obj is data for piece in pieces)  # views of the input, not copies
        assert b"".join(pieces) == encrypted["encrypted_content"].native
        hollow_content, hollow_encrypted = full_parse(hollow)
        assert hollow_encrypted["encrypted_content"].native == b""
        assert hollow_content["recipient_infos"].dump() == content["recipient_infos"].dump()
        assert hollow_content["version"].native == content["version"].native
        for name in ("content_type", "content_encryption_algorithm"):
            assert hollow_encrypted[name].dump() == encrypted[name].dump()
        assert len(hollow) < len(data) - len(b"".join(pieces)) + 64


def test_every_encrypted_smime_case_has_its_structure_found():
    """The walk misses none: only the case whose base64 cannot be decoded has no structure to read."""
    encrypted = corpus_cases(lambda case: case["smime_or_pgp"] == "smime" and case["encrypted"])
    missed = {case["id"] for case in encrypted} - set(CASE_IDS)
    assert {case["family"] for case in encrypted if case["id"] in missed} == {"malformed-corrupted-base64"}


def test_gpgsm_writes_indefinite_lengths_and_its_ciphertext_in_pieces():
    gpgsm = [case for case in ENVELOPED_CASES if case.get("tool") == "gpgsm"]
    assert gpgsm
    for case in gpgsm:
        for data in enveloped_ders(case):
            assert data[1] == 0x80  # the ContentInfo's length octet: indefinite
            hollow, pieces = ber.lift_encrypted_content(data, LIFTED)
            assert hollow[1] == 0x80 and len(pieces) > 1


@pytest.mark.parametrize("case", ENVELOPED_CASES, ids=CASE_IDS)
def test_truncated_at_every_offset_is_refused(case):
    for data in enveloped_ders(case):
        for cut in range(len(data)):
            assert ber.lift_encrypted_content(data[:cut], LIFTED) is None, cut


# --- BER built by hand around openssl's vectors ---------------------------------------------------

def length_octets(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(octets)]) + octets


def tlv(identifier: int | bytes, content: bytes, indefinite: bool = False) -> bytes:
    identifier = bytes([identifier]) if isinstance(identifier, int) else identifier
    if indefinite:
        return identifier + b"\x80" + content + b"\x00\x00"
    return identifier + length_octets(len(content)) + content


def der_children(content: bytes) -> list[bytes]:
    """The encoded elements of a DER contents octets, one after another (asn1crypto's parser reads them)."""
    out = []
    while content:
        size = parser.peek(content)
        out.append(content[:size])
        content = content[size:]
    return out


def contents(element: bytes) -> bytes:
    return parser.parse(element)[4]


@dataclass
class Skeleton:
    """An openssl (Auth)EnvelopedData taken apart, to be encoded again in other BER forms."""

    oid: bytes  # the ContentInfo's contentType, encoded
    before: list[bytes]  # the members before the EncryptedContentInfo: version, recipientInfos
    content_type: bytes
    algorithm: bytes
    ciphertext: bytes
    after: list[bytes]  # authAttrs, mac (AuthEnvelopedData)

    @classmethod
    def of(cls, data: bytes) -> Skeleton:
        oid, wrapper = der_children(contents(data))
        members = der_children(contents(contents(wrapper)))
        at = next(i for i, member in enumerate(members) if i and members[i - 1][0] == 0x31)
        content_type, algorithm, encrypted = der_children(contents(members[at]))
        return cls(oid, members[:at], content_type, algorithm, contents(encrypted), members[at + 1:])

    def build(self, encrypted_content: bytes, indefinite=(False,) * 4, *, inside=b"", after=b"") -> bytes:
        """The ContentInfo, its [0], the (Auth)EnvelopedData and the EncryptedContentInfo, with ``indefinite``
        lengths in that order; ``inside`` goes after the encryptedContent, ``after`` after the last member."""
        encrypted_info = tlv(0x30, self.content_type + self.algorithm + encrypted_content + inside, indefinite[3])
        data = tlv(0x30, b"".join([*self.before, encrypted_info, *self.after]) + after, indefinite[2])
        return tlv(0x30, self.oid + tlv(0xA0, data, indefinite[1]), indefinite[0])


def pieces_of(data: bytes, *sizes: int) -> list[bytes]:
    cuts = list(itertools.accumulate(sizes))
    return [data[start:end] for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def one_piece(ciphertext: bytes) -> bytes:
    return tlv(0x80, ciphertext)


def flat_pieces(ciphertext: bytes) -> bytes:
    return tlv(0xA0, b"".join(tlv(0x04, piece) for piece in pieces_of(ciphertext, 1, 16, 100)))


def nested_pieces(ciphertext: bytes) -> bytes:
    """[0] { OCTET STRING, constructed OCTET STRING { OCTET STRING, constructed { OCTET STRING } }, OCTET STRING }."""
    a, b, c, d = pieces_of(ciphertext, 5, 20, 7)
    inner = tlv(0x24, tlv(0x04, b) + tlv(0x24, tlv(0x04, c)))
    return tlv(0xA0, tlv(0x04, a) + inner + tlv(0x04, d))


def nested_indefinite_pieces(ciphertext: bytes) -> bytes:
    a, b, c = pieces_of(ciphertext, 33, 1)
    return tlv(0xA0, tlv(0x04, a) + tlv(0x24, tlv(0x04, b) + tlv(0x04, b""), indefinite=True) + tlv(0x04, c),
               indefinite=True)


FORMS = {"one-piece": (one_piece, 1), "pieces": (flat_pieces, 4), "nested-pieces": (nested_pieces, 4),
         "nested-indefinite-pieces": (nested_indefinite_pieces, 4)}
VECTORS = ("env-rsa15-aes128", "env-gcm-aes128")
NESTINGS = list(itertools.product((False, True), repeat=4))


def decrypted(data: bytes) -> bytearray:
    content, _ = cms.decrypt(cms.open_enveloped(cms.load(data), max_recipients=10), PemKeys().find)
    return content


@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize("indefinite", NESTINGS, ids=["".join("i" if i else "d" for i in n) for n in NESTINGS])
@pytest.mark.parametrize("vector", VECTORS)
def test_every_ber_form_is_lifted_and_still_decrypts(vector, indefinite, form):
    skeleton = Skeleton.of(der(vector))
    encode, count = FORMS[form]
    data = skeleton.build(encode(skeleton.ciphertext), indefinite)

    hollow, pieces = ber.lift_encrypted_content(data, LIFTED)

    assert len(pieces) == count
    assert b"".join(pieces) == skeleton.ciphertext
    assert hollow == skeleton.build(ber.EMPTY_CONTENT, indefinite)
    assert cms.load(data).encrypted_content == pieces
    assert decrypted(data) == CONTENT


def test_the_ber_forms_are_what_openssl_wrote_when_all_definite():
    for vector in VECTORS:
        skeleton = Skeleton.of(der(vector))
        assert skeleton.build(one_piece(skeleton.ciphertext)) == der(vector)


def test_originator_info_before_the_recipients_is_stepped_over():
    skeleton = Skeleton.of(der("env-rsa15-aes128"))
    version, recipients = skeleton.before
    originator = tlv(0xA0, b"")  # [0] IMPLICIT OriginatorInfo without certificates or CRLs
    skeleton.before = [version, originator, recipients]
    data = skeleton.build(flat_pieces(skeleton.ciphertext))

    hollow, pieces = ber.lift_encrypted_content(data, LIFTED)

    assert hollow == skeleton.build(ber.EMPTY_CONTENT)
    assert b"".join(pieces) == skeleton.ciphertext
    assert decrypted(data) == CONTENT


HIGH_TAGS = {
    "one-octet": b"\xbf\x1f",  # [31] constructed, the smallest number that needs the long form
    "three-octets": b"\x9f\x81\x80\x01",  # [16385] primitive
}


@pytest.mark.parametrize("identifier", HIGH_TAGS.values(), ids=list(HIGH_TAGS))
def test_high_tag_numbers_are_read(identifier):
    element = tlv(identifier, b"abc")
    read = ber.read(memoryview(element + b"rest"), 0, len(element) + 4)
    assert (read.tag, read.length_at, read.content, read.end) == (
        identifier[0], len(identifier), len(identifier) + 1, len(element))


@pytest.mark.parametrize("identifier", HIGH_TAGS.values(), ids=list(HIGH_TAGS))
def test_elements_with_high_tag_numbers_beside_the_path_are_kept(identifier):
    skeleton = Skeleton.of(der("env-rsa15-aes128"))
    extra = tlv(identifier, b"\x04\x01x") if identifier[0] & 0x20 else tlv(identifier, b"x" * 200)
    for indefinite in ((False,) * 4, (True,) * 4):
        layout = {"inside": extra, "after": extra}
        data = skeleton.build(nested_pieces(skeleton.ciphertext), indefinite, **layout)

        hollow, pieces = ber.lift_encrypted_content(data, LIFTED)

        assert hollow == skeleton.build(ber.EMPTY_CONTENT, indefinite, **layout)
        assert b"".join(pieces) == skeleton.ciphertext


def test_a_high_tag_number_where_the_path_needs_a_low_one_is_refused():
    skeleton = Skeleton.of(der("env-rsa15-aes128"))
    oid, wrapper = der_children(contents(skeleton.build(one_piece(skeleton.ciphertext))))
    # The ContentInfo's [0] written in the long form (number 0 in a second octet): not what the reader follows.
    assert ber.lift_encrypted_content(tlv(0x30, oid + tlv(b"\xbf\x00", contents(wrapper))), LIFTED) is None


def test_trailing_junk_is_kept_in_the_hollow_for_asn1crypto_to_refuse():
    data = der("env-rsa15-aes128") + b"\x00junk"
    skeleton = Skeleton.of(der("env-rsa15-aes128"))

    hollow, pieces = ber.lift_encrypted_content(data, LIFTED)

    assert hollow == skeleton.build(ber.EMPTY_CONTENT) + b"\x00junk"
    assert b"".join(pieces) == skeleton.ciphertext
    with pytest.raises(cms.MalformedCms):
        cms.load(data)


# --- hostile input: None, and asn1crypto decides --------------------------------------------------

def test_a_piece_of_another_type_is_refused():
    skeleton = Skeleton.of(der("env-rsa15-aes128"))
    for wrong in (tlv(0x02, b"\x01"), tlv(0x80, b"x"), tlv(0xA0, tlv(0x04, b"x"))):
        content = tlv(0xA0, tlv(0x04, skeleton.ciphertext) + wrong)
        assert ber.lift_encrypted_content(skeleton.build(content), LIFTED) is None


def test_indefinite_length_on_a_primitive_is_refused():
    skeleton = Skeleton.of(der("env-rsa15-aes128"))
    assert ber.lift_encrypted_content(skeleton.build(b"\x80\x80" + skeleton.ciphertext + b"\x00\x00"), LIFTED) is None


def test_lengths_that_cannot_be_are_refused():
    skeleton = Skeleton.of(der("env-rsa15-aes128"))
    data = skeleton.build(one_piece(skeleton.ciphertext))
    too_many_octets = b"\x30\x89" + (len(data) - 4).to_bytes(9, "big") + data[4:]  # BER allows it; nobody needs it
    past_the_end = data[:2] + (int.from_bytes(data[2:4], "big") + 1).to_bytes(2, "big") + data[4:]  # one byte short
    assert data[1] == 0x82 and ber.lift_encrypted_content(data, LIFTED) is not None
    for hostile in (too_many_octets, past_the_end):
        assert ber.lift_encrypted_content(hostile, LIFTED) is None


@pytest.mark.parametrize("terminated", [True, False], ids=["terminated", "unterminated"])
@pytest.mark.parametrize("where", ["pieces", "beside"])
def test_indefinite_nesting_deeper_than_the_stack_is_refused(where, terminated):
    depth = sys.getrecursionlimit() * 2
    nested = b"\x24\x80" * depth + (b"\x00\x00" * depth if terminated else b"")
    skeleton = Skeleton.of(der("env-rsa15-aes128"))
    if where == "pieces":
        data = skeleton.build(tlv(0xA0, nested, indefinite=True), (True,) * 4)
    else:
        data = skeleton.build(one_piece(skeleton.ciphertext), (True,) * 4, after=nested)
    assert ber.lift_encrypted_content(data, LIFTED) is None
    with pytest.raises(cms.MalformedCms):
        cms.load(data)


@pytest.mark.parametrize("name", ["sig-rsa-opaque", "sig-rsa-sha256"])
def test_signed_data_is_not_lifted(name):
    assert ber.lift_encrypted_content(der(name), LIFTED) is None


def test_other_content_types_and_shapes_are_not_lifted():
    skeleton = Skeleton.of(der("env-rsa15-aes128"))
    body = contents(skeleton.build(one_piece(skeleton.ciphertext)))[len(skeleton.oid):]
    data_oid = asn1_core.ObjectIdentifier("1.2.840.113549.1.7.1").dump()
    assert ber.lift_encrypted_content(tlv(0x30, data_oid + body), LIFTED) is None
    assert ber.lift_encrypted_content(tlv(0x31, skeleton.oid + body), LIFTED) is None  # a SET, not a SEQUENCE
    assert ber.lift_encrypted_content(tlv(0x30, skeleton.oid + body + tlv(0x04, b"")), LIFTED) is None
    assert ber.lift_encrypted_content(tlv(0x30, skeleton.oid + tlv(0xA0, tlv(0x31, b""))), LIFTED) is None
    assert ber.lift_encrypted_content(b"", LIFTED) is None


def test_detached_content_is_not_lifted_and_cannot_be_decrypted():
    skeleton = Skeleton.of(der("env-rsa15-aes128"))
    detached = skeleton.build(b"")  # an EncryptedContentInfo without its encryptedContent

    assert ber.lift_encrypted_content(detached, LIFTED) is None
    with pytest.raises(cms.MalformedCms, match="^detached encrypted content$"):  # parses; nothing to decrypt
        decrypted(detached)


def pieces_nested(depth: int, ciphertext: bytes) -> bytes:
    """[0] holding the ciphertext in one OCTET STRING inside ``depth`` constructed indefinite-length ones."""
    piece = tlv(0x04, ciphertext)
    for _ in range(depth):
        piece = tlv(0x24, piece, indefinite=True)
    return tlv(0xA0, piece, indefinite=True)


def test_indefinite_lengths_nested_within_the_limit_are_lifted():
    skeleton = Skeleton.of(der("env-rsa15-aes128"))
    depth = ber.MAX_INDEFINITE_DEPTH - 5  # ContentInfo, [0], EnvelopedData, EncryptedContentInfo and the [0] itself
    data = skeleton.build(pieces_nested(depth, skeleton.ciphertext), (True,) * 4)
    hollow, pieces = ber.lift_encrypted_content(data, LIFTED)
    assert b"".join(pieces) == skeleton.ciphertext and decrypted(data) == CONTENT


def test_indefinite_lengths_nested_past_the_limit_are_left_to_asn1crypto():
    """Every level of nesting read its whole subtree again: 200 levels in 321 KB once took 15 s to lift."""
    skeleton = Skeleton.of(der("env-rsa15-aes128"))
    data = skeleton.build(pieces_nested(200, skeleton.ciphertext), (True,) * 4)
    assert ber.lift_encrypted_content(data, LIFTED) is None
    with pytest.raises(ber.BerError, match="nested too deep"):
        ber.read(memoryview(data), 0, len(data))
