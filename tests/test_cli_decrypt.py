"""``ciphermilter decrypt``: the daemon's pipeline offline, on every corpus message."""

import json

import pytest
from click.testing import CliRunner

from ciphermilter.core import pipeline as core
from ciphermilter.cli.main import main
from ciphermilter.core.info import is_reserved
from ciphermilter.mime import split_headers
from ciphermilter.core.plan import apply_plan
from conftest import CORPUS, case_envelope, case_message, corpus_cases

CASES = corpus_cases()
INTERNAL_RCPT = "bob@corp-pub.example"


def run(store, *args, input=None):
    return CliRunner().invoke(main, ["--store", str(store.path), "decrypt", *args], input=input)


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_offline_output_is_what_the_pipeline_plans(corpus_store, case):
    message = case_message(case)
    envelope = case_envelope(case)
    options = [option for recipient in envelope.recipients for option in ("--rcpt", recipient)]
    result = run(corpus_store, *options, str(CORPUS / case["message_file"]))
    outcome = core.process(message, envelope, corpus_store)
    # 3: a limit stopped us inside content we hold the key for (the 1 GiB bzip2 bomb encrypted to bob)
    assert result.exit_code == (3 if outcome.held_at_limit else 0), result.output
    expected = apply_plan(message, outcome.plan)
    assert result.stdout_bytes == expected
    headers = [h.name for h in split_headers(result.stdout_bytes)[0]]
    assert not any(is_reserved(n) and not n.startswith("X-CipherMail-Info-") for n in headers)
    forged = [h for h in split_headers(message)[0] if is_reserved(h.name)]
    assert not any(h.raw in result.stdout_bytes for h in forged)


def test_explain_reports_layers_and_headers(corpus_store):
    case = next(c for c in CASES if c["id"] == "smime-env-rsa15-aes128-cbc")
    result = run(corpus_store, "--rcpt", INTERNAL_RCPT, "--explain", str(CORPUS / case["message_file"]))
    assert result.exit_code == 0
    report = json.loads(result.stderr)
    assert report["readers"] == {"required": True, "recipients": [INTERNAL_RCPT]}
    assert report["headers"]["X-CipherMail-Info-Encryption-Algorithm-0"] == "AES-128-CBC"
    assert report["smime"]["layers"][0]["content_sha256"] == case["expected_plaintext_sha256"]
    assert report["error"] is None


def test_lf_only_file_is_read_as_postfix_would_hand_it_over(corpus_store):
    case = next(c for c in CASES if c["id"] == "smime-env-rsa15-aes128-cbc")
    message = case_message(case)
    result = run(corpus_store, "-", input=message.replace(b"\r\n", b"\n"))
    assert result.exit_code == 0
    assert result.stdout_bytes == run(corpus_store, "-", input=message).stdout_bytes
    assert b"X-CipherMail-Info-SMIME-Encrypted: True" in result.stdout_bytes


def test_external_recipient_leaves_the_message_encrypted(corpus_store):
    case = next(c for c in CASES if c["id"] == "smime-env-rsa15-aes128-cbc")
    result = run(corpus_store, "--rcpt", "someone@elsewhere.example", "--explain", str(CORPUS / case["message_file"]))
    assert result.stdout_bytes == case_message(case)
    assert json.loads(result.stderr)["skipped"] == "no recipient in an internal domain"


def test_missing_store_is_one_clear_line(tmp_path):
    result = CliRunner().invoke(main, ["--store", str(tmp_path / "none.db"), "decrypt", "-"], input=b"")
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("ciphermilter: ")
    assert not (tmp_path / "none.db").exists()


def test_without_rcpt_nothing_is_decrypted_for_anybody(corpus_store):
    """The daemon always has a recipient; offline, none given must not make its rule weaker."""
    case = next(c for c in CASES if c["id"] == "smime-env-rsa15-aes128-cbc")
    result = run(corpus_store, "--explain", str(CORPUS / case["message_file"]))
    assert result.exit_code == 0
    assert result.stdout_bytes.endswith(case_message(case).partition(b"\r\n\r\n")[2])
    report = json.loads(result.stderr)
    assert report["headers"]["X-CipherMail-Info-SMIME-Decryption-Refused-0"] == (
        "no envelope recipient to decrypt for (reader policy)")
    assert report["readers"] == {"required": True, "recipients": [],
                                 "refused": "no envelope recipient to decrypt for (reader policy)"}
