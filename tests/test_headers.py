import pytest

from ciphermilter.core.info import InfoHeaders, fold, info_name, is_reserved, printable


@pytest.mark.parametrize(
    "name", ["X-CipherMail-Info-SMIME-Signed", "x-ciphermail-info-foo", "X-CIPHERMAIL-Whatever", " X-Djigzo-Info-A"]
)
def test_reserved_names(name):
    assert is_reserved(name)


@pytest.mark.parametrize("name", ["X-Cipher", "Subject", "X-Decrypted", "X-CipherMailInfo"])
def test_not_reserved(name):
    assert not is_reserved(name)


def test_names_with_index_and_level():
    assert info_name("Encryption-Recipient", 2, 0) == "X-CipherMail-Info-Encryption-Recipient-2-0"
    assert info_name("Encryption-Algorithm", None, 1) == "X-CipherMail-Info-Encryption-Algorithm-1"
    assert info_name("SMIME-Encrypted") == "X-CipherMail-Info-SMIME-Encrypted"


def test_index_without_level_is_refused():
    with pytest.raises(ValueError):
        InfoHeaders().add("Signer-ID", "x", index=0)


def test_printable_escapes_utf8_bytes():
    assert printable("CN=Jürgen\x01") == "CN=J\\C3\\BCrgen\\01"


def test_fold_never_cuts_and_unfolds_exactly():
    value = " ".join(["word%02d" % i for i in range(40)]) + " " + "x" * 120
    folded = fold("X-CipherMail-Info-Signer-Email-0-0", value)
    assert folded.replace("\n", "") == value
    lines = folded.split("\n")
    assert len(lines) > 2
    assert all(line.startswith(" ") for line in lines[1:])
    assert lines[-1].strip() == "x" * 120


def test_flags_are_written_once():
    info = InfoHeaders()
    info.flag("SMIME-Encrypted")
    info.flag("SMIME-Encrypted")
    other = InfoHeaders()
    other.flag("SMIME-Encrypted")
    info.extend(other)
    assert info.as_dict() == {"X-CipherMail-Info-SMIME-Encrypted": "True"}
    assert len(info) == 1
