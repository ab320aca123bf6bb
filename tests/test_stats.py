"""Statistics: counting real outcomes of the corpus, the stats file, the Prometheus exposition, the command."""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from ciphermilter.core import pipeline as core

from ciphermilter import files
from ciphermilter.daemon import stats
from ciphermilter.cli.main import main
from ciphermilter.core.findings import Facts, Failure, Protection
from ciphermilter.core.info import InfoHeaders
from ciphermilter.core.plan import EditPlan
from conftest import case_envelope, case_message, corpus_cases

INTERNAL_RECIPIENT = "bob@corp-pub.example"
# One line of the text exposition format: a comment, or name{labels} value.
SAMPLE = re.compile(r'[a-z_]+(\{[a-z_]+="(?:[^"\\\n]|\\["\\n])*"(,[a-z_]+="(?:[^"\\\n]|\\["\\n])*")*\})? [0-9.e+-]+\Z')
COMMENT = re.compile(r"# (HELP [a-z_]+ .+|TYPE [a-z_]+ (counter|gauge|summary|histogram))\Z")


# The facts a handler renders beside these headers (core.findings): counting reads the facts.
SMIME_UNDECRYPTED = {"SMIME-Decryption-Key-Not-Found", "SMIME-Decryption-Failed", "SMIME-Not-Decrypted"}
PGP_UNDECRYPTED = {"PGP-Decryption-Key-Not-Found", "PGP-Decryption-Failed", "PGP-Decryption-Withheld"}


def outcome_with(*headers: tuple[str, str], report=None, error=None) -> core.Outcome:
    """An outcome carrying these info headers, built through the real InfoHeaders builder, and their facts."""
    info = InfoHeaders()
    for name, value in headers:
        info.add(name, value)
    named = dict(headers)
    smime_encrypted = "SMIME-Encrypted" in named
    pgp_encrypted, pgp_signed = "PGP-Encrypted" in named, "PGP-Signed" in named
    smime = Protection(encrypted=smime_encrypted, decrypted=smime_encrypted and not SMIME_UNDECRYPTED & named.keys())
    pgp = Protection(encrypted=pgp_encrypted, decrypted=pgp_encrypted and not PGP_UNDECRYPTED & named.keys(),
                     signed=pgp_signed, verified=pgp_signed and named.get("PGP-Signature-Valid") == "True")
    failures = tuple(Failure.of(name, value) for name, value in headers if name in stats.FAILURE_HEADERS)
    return core.Outcome(plan=EditPlan(), info=info, report=report or {}, error=error,
                        facts=Facts(not_processed="Not-Processed" in named, smime=smime, pgp=pgp, failures=failures))


@pytest.mark.parametrize("case", corpus_cases(), ids=lambda case: case["id"])
def test_counts_agree_with_what_the_corpus_says_of_each_message(case, corpus_store):
    outcome = core.process(case_message(case), case_envelope(case), corpus_store)
    found, failures = stats.counted(outcome)
    if "not_processed" in found:
        assert failures and failures[0][0] == "Not-Processed"
        assert not {name for name in found if name.startswith(("smime_", "pgp_"))}
        return
    kind = case["smime_or_pgp"]
    for other in {"smime", "pgp"} - {kind}:
        assert not {name for name in found if name.startswith(other + "_")}
    if kind == "none":
        return
    assert (f"{kind}_encrypted" in found) == bool(case["encrypted"])
    assert (f"{kind}_signed" in found) == bool(case["signed"])
    if f"{kind}_decrypted" in found or f"{kind}_key_not_found" in found:
        assert (f"{kind}_decrypted" in found) == bool(case["decryptable_with_our_keys"])
    if case["encrypted"] and case["decryptable_with_our_keys"] and not failures:
        assert f"{kind}_decrypted" in found
    if case["signed"] and case["signature_should_verify"] is not None:
        verified = {"smime": {"smime_verified", "smime_trusted"}, "pgp": {"pgp_verified"}}[kind]
        assert verified <= found if case["signature_should_verify"] else not verified <= found


def test_external_mail_counts_as_not_internal_and_nothing_else(corpus_store):
    case = corpus_cases(lambda c: c["family"] == "smime-enveloped")[0]
    outcome = core.process(case_message(case), core.Envelope(recipients=["zed@elsewhere.example"]), corpus_store)
    assert stats.counted(outcome) == ({"messages", "not_internal"}, [])


def test_an_internal_error_counts_with_its_reason():
    outcome = outcome_with(("Not-Processed", "internal error: KeyError"), error="internal error: KeyError")
    found, failures = stats.counted(outcome)
    assert found == {"messages", "not_processed", "errors"}
    assert failures == [("Not-Processed", "internal error: KeyError")]


def test_percentiles_are_nearest_rank_over_the_window():
    counters = stats.Counters()
    for millis in range(1, 101):
        counters.record(outcome_with(), millis / 1000)
    timing = counters.snapshot()["processing_seconds"]
    assert timing["quantiles"] == {"0.5": 0.05, "0.9": 0.09, "0.99": 0.099}
    assert timing["max"] == 0.1 and timing["count"] == 100 and timing["sum"] == pytest.approx(5.05)


def test_concurrent_records_lose_no_count():
    counters = stats.Counters()
    outcome = outcome_with(("PGP-Encrypted", "True"), ("PGP-Decryption-Failed", "bad session key"))

    def work():
        for _ in range(500):
            counters.record(outcome, 0.001)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    snapshot = counters.snapshot()
    assert snapshot["counters"]["messages"] == 4000
    assert snapshot["counters"]["pgp_encrypted"] == 4000
    assert snapshot["counters"]["pgp_decrypted"] == 0
    assert snapshot["failures"] == {"PGP-Decryption-Failed": {"bad session key": 4000}}


def test_distinct_failure_reasons_are_bounded():
    counters = stats.Counters()
    for number in range(stats.MAX_REASONS + 5):
        counters.record(outcome_with(("Not-Processed", f"reason {number}")), 0.001)
    reasons = counters.snapshot()["failures"]["Not-Processed"]
    assert len(reasons) == stats.MAX_REASONS + 1
    assert reasons[stats.OTHER_REASON] == 5


def test_prometheus_exposition_is_well_formed_and_escapes_labels():
    counters = stats.Counters()
    counters.record(outcome_with(("SMIME-Encrypted", "True"), ("SMIME-Decryption-Failed", 'bad "pad" \\ here')), 0.25)
    text = stats.prometheus(counters.snapshot())
    assert text.endswith("\n")
    for line in text.splitlines():
        assert COMMENT.match(line) or SAMPLE.match(line), line
    assert "ciphermilter_messages_total 1\n" in text
    assert "ciphermilter_smime_encrypted_total 1\n" in text
    assert "ciphermilter_smime_decrypted_total 0\n" in text
    assert ('ciphermilter_failures_total{header="SMIME-Decryption-Failed",reason="bad \\"pad\\" \\\\ here"} 1\n'
            in text)
    assert 'ciphermilter_processing_seconds{quantile="0.5"} 0.25\n' in text
    assert "ciphermilter_processing_seconds_count 1\n" in text


def test_exporter_writes_both_files_and_serves_metrics_on_loopback(tmp_path):
    counters = stats.Counters()
    counters.record(outcome_with(("PGP-Signed", "True"), ("PGP-Signature-Valid", "True")), 0.002)
    stats_file, textfile = tmp_path / "ciphermilter.stats.json", tmp_path / "ciphermilter.prom"
    exporter = stats.Exporter(counters, str(stats_file), interval=3600, textfile=str(textfile), port=0)
    exporter.start()
    try:
        host, port = exporter.server.server_address
        assert host == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as response:
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            assert "ciphermilter_pgp_verified_total 1\n" in response.read().decode()
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/")
        assert error.value.code == 404
        counters.record(outcome_with(), 0.001)
    finally:
        exporter.stop()
    assert stats.read_stats_file(str(stats_file))["counters"]["messages"] == 2  # stop() wrote the last state
    assert "ciphermilter_messages_total 2\n" in textfile.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ciphermilter.prom", "ciphermilter.stats.json"]


def test_default_stats_file_sits_beside_the_store():
    assert files.default_stats_file("var/ciphermilter.db") == "var/ciphermilter.stats.json"
    assert files.default_stats_file("/var/lib/ciphermilter/keys.db") == "/var/lib/ciphermilter/ciphermilter.stats.json"


@pytest.fixture
def stats_file(tmp_path):
    counters = stats.Counters()
    counters.record(outcome_with(("SMIME-Encrypted", "True"), ("Encryption-Algorithm", "AES-256-CBC")), 0.004)
    counters.record(outcome_with(("Not-Processed", "MIME nesting deeper than 50")), 0.001)
    path = tmp_path / "ciphermilter.stats.json"
    stats.Exporter(counters, str(path), interval=60).write()
    return path


def test_stats_command_json(stats_file):
    result = CliRunner().invoke(main, ["stats", "--file", str(stats_file), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["counters"]["messages"] == 2 and data["counters"]["smime_decrypted"] == 1
    assert data["failures"] == {"Not-Processed": {"MIME nesting deeper than 50": 1}}


def test_stats_command_human_and_prometheus(stats_file):
    human = CliRunner().invoke(main, ["stats", "--file", str(stats_file)])
    assert human.exit_code == 0, human.output
    assert re.search(r"^smime_decrypted +1$", human.output, re.M)
    assert "failure Not-Processed: MIME nesting deeper than 50: 1" in human.output
    assert "p50=" in human.output
    exposition = CliRunner().invoke(main, ["stats", "--file", str(stats_file), "--prometheus"])
    assert exposition.exit_code == 0
    assert "ciphermilter_not_processed_total 1\n" in exposition.output


def test_stats_command_finds_the_file_beside_the_store(stats_file):
    result = CliRunner().invoke(main, ["--store", str(stats_file.parent / "ciphermilter.db"), "stats", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["counters"]["messages"] == 2


@pytest.mark.parametrize("content, message", [
    (None, "no statistics at"),
    ("{not json", "is not a statistics file"),
    ('{"version": 99}', "is not a statistics file of this ciphermilter version"),
], ids=["missing", "garbage", "other-version"])
def test_stats_command_refuses_a_bad_file_in_one_line(tmp_path, content, message):
    path = tmp_path / "stats.json"
    if content is not None:
        path.write_text(content)
    result = CliRunner().invoke(main, ["stats", "--file", str(path)])
    assert result.exit_code == 1
    assert message in result.output and result.output.count("\n") == 1


def test_an_unwritable_stats_file_is_logged_and_never_raises(tmp_path, caplog):
    exporter = stats.Exporter(stats.Counters(), str(tmp_path / "missing-dir" / "stats.json"), interval=3600)
    exporter.start()
    exporter.stop()
    warnings = [r.getMessage() for r in caplog.records if r.name == "ciphermilter.daemon.stats"]
    assert len(warnings) == 2 and all(w.startswith("cannot write statistics: ") for w in warnings)


# --------------------------------------------------------------------------- facts agree with the headers


def counted_from_headers(outcome: core.Outcome) -> tuple[set[str], list[tuple[str, str]]]:
    """What the statistics counted before the findings were typed: the info header names parsed back.

    Kept here as the oracle the facts must agree with, message by message (issue 15 section 3).
    """
    values: dict[str, list[str]] = {}
    for name, value in outcome.info:
        values.setdefault(re.sub(r"(?:-\d+)+\Z", "", name[len("X-CipherMail-Info-"):]), []).append(
            value.replace("\n", ""))
    found = {"messages"} | {name for name, happened in (("errors", outcome.error), ("rejected", outcome.reject),
                                                         ("limit_held", outcome.held_at_limit)) if happened}
    if outcome.report.get("skipped") == "no recipient in an internal domain":
        found.add("not_internal")
    found |= {"not_processed"} if "Not-Processed" in values else set()
    for kind, undecrypted in (("smime", SMIME_UNDECRYPTED), ("pgp", PGP_UNDECRYPTED)):
        prefix = "SMIME" if kind == "smime" else "PGP"
        if f"{prefix}-Encrypted" in values:
            found.add(f"{kind}_encrypted")
            found |= {f"{kind}_key_not_found"} if f"{prefix}-Decryption-Key-Not-Found" in values else set()
            found |= set() if undecrypted & values.keys() else {f"{kind}_decrypted"}
    all_true = lambda name: name in values and all(v == "True" for v in values[name])  # noqa: E731
    if "SMIME-Signed" in values:
        found.add("smime_signed")
        intact = "SMIME-Signature-Failed" not in values
        found |= {"smime_verified"} if all_true("Signer-Verified") and intact else set()
        found |= {"smime_trusted"} if all_true("Signer-Trusted") and intact else set()
    if "PGP-Signed" in values:
        found |= {"pgp_signed"} | ({"pgp_verified"} if all_true("PGP-Signature-Valid") else set())
    failures = [(name, value) for name in stats.FAILURE_HEADERS for value in values.get(name, ())]
    if outcome.error and not failures:
        failures.append(("error", outcome.error))
    if outcome.reject:
        failures.append(("rejected", outcome.reject))
    return found, failures


EXPLAIN_VECTORS = sorted((Path(__file__).parent / "vectors" / "explain").glob("attack-*.eml"))


@pytest.mark.parametrize("case", corpus_cases(), ids=lambda case: case["id"])
def test_facts_count_what_the_headers_say_on_the_corpus(case, corpus_store):
    outcome = core.process(case_message(case), case_envelope(case), corpus_store)
    found, failures = stats.counted(outcome)
    expected_found, expected_failures = counted_from_headers(outcome)
    assert found == expected_found and sorted(failures) == sorted(expected_failures)


@pytest.mark.parametrize("path", EXPLAIN_VECTORS, ids=lambda path: path.stem)
@pytest.mark.parametrize("recipient", [INTERNAL_RECIPIENT, "erin@corp-pub.example", "zed@elsewhere.example"])
def test_facts_count_what_the_headers_say_on_attacks(path, recipient, corpus_store):
    outcome = core.process(path.read_bytes(), core.Envelope(recipients=[recipient]), corpus_store)
    found, failures = stats.counted(outcome)
    expected_found, expected_failures = counted_from_headers(outcome)
    assert found == expected_found and sorted(failures) == sorted(expected_failures)


@pytest.mark.parametrize("flag", [f.name for f in dataclasses.fields(Protection)])
def test_either_handlers_protection_flag_survives_the_union(flag):
    """Facts of both handlers are joined with ``|``: every flag of either side must come through (a flag
    added to Protection and forgotten in ``__or__`` would vanish from the counters)."""
    one = Protection(**{flag: True})
    assert getattr(one | Protection(), flag) and getattr(Protection() | one, flag)
    assert {f.name for f in dataclasses.fields(Protection) if getattr(one | one, f.name)} == {flag}


# --------------------------------------------------------------------------- per result, the store's health


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as response:
        return response.read().decode()


def samples(text: str, name: str) -> dict[str, float]:
    """{labels: value} of one metric in an exposition."""
    found = {}
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")):
            labels, _, value = line[len(name):].rpartition(" ")
            found[labels] = float(value)
    return found


def test_the_real_exporter_serves_latency_by_result_and_the_store_health(tmp_path, corpus_store):
    from ciphermilter.core.result import Result
    from ciphermilter.store.holder import StoreHolder
    from conftest import corpus_store_file

    store_path = corpus_store_file(tmp_path)
    counters = stats.Counters()
    for name, elapsed in [("smime-env-rsa15-aes128-cbc", 0.004), ("smime-env-not-ours", 0.02),
                          ("smime-env-rsa15-aes256-cbc-utf8", 3.0)]:
        found = next(case for case in corpus_cases() if case["id"] == name)
        counters.record(core.process(case_message(found), case_envelope(found), corpus_store), elapsed)
    exporter = stats.Exporter(counters, str(tmp_path / "stats.json"), interval=3600, port=0,
                              probe=stats.StoreProbe(StoreHolder(str(store_path), str(store_path) + ".key")))
    exporter.start()
    try:
        text = scrape(exporter.server.server_address[1])
        buckets = samples(text, "ciphermilter_result_seconds_bucket")
        assert buckets['{result="decrypted",le="0.005"}'] == 1 and buckets['{result="decrypted",le="2.5"}'] == 1
        assert buckets['{result="decrypted",le="5"}'] == 2 == buckets['{result="decrypted",le="+Inf"}']
        assert buckets['{result="no-key",le="0.01"}'] == 0 and buckets['{result="no-key",le="0.025"}'] == 1
        counts = samples(text, "ciphermilter_result_seconds_count")
        assert set(counts) == {f'{{result="{result.value}"}}' for result in Result}  # every word, zeros too
        assert samples(text, "ciphermilter_result_seconds_sum")['{result="decrypted"}'] == 3.004
        assert samples(text, "ciphermilter_store_up") == {"": 1}
        expiry = samples(text, "ciphermilter_key_earliest_expiry_timestamp_seconds")[""]
        assert expiry == min(earliest_private_key_expiries(corpus_store))

        store_path.rename(tmp_path / "moved.db")  # the store goes away: the next check says so
        exporter.write()
        text = scrape(exporter.server.server_address[1])
        assert samples(text, "ciphermilter_store_up") == {"": 0}
        assert samples(text, "ciphermilter_key_earliest_expiry_timestamp_seconds") == {"": expiry}  # last known
    finally:
        exporter.stop()
    for line in text.splitlines():
        assert COMMENT.match(line) or SAMPLE.match(line), line


def earliest_private_key_expiries(store) -> list[float]:
    """The expiry of each private key of the store still in the future, by the listing's own facts."""
    import datetime

    from ciphermilter.store import admin

    now = datetime.datetime.now(datetime.timezone.utc)
    moments = [datetime.datetime.fromisoformat(key["expires"]).timestamp() for key in admin.list_keys(store)
               if key["private_key"] and key["expires"] and datetime.datetime.fromisoformat(key["expires"]) > now]
    return [round(moment) for moment in moments]


def test_no_store_check_no_store_gauges():
    text = stats.prometheus(stats.Counters().snapshot())
    assert "ciphermilter_store_up" not in text and 'ciphermilter_result_seconds_count{result="plain"} 0' in text


def test_every_metric_is_documented_in_ciphermilter_8():
    from support.man import page, rendered

    counters = stats.Counters()
    counters.store = {"reachable": True, "earliest_key_expiry": 2e9}
    documented = rendered(page("ciphermilter.8")).partition("\nSTATISTICS\n")[2].partition("\nFILES\n")[0]
    metrics = re.findall(r"^# TYPE (\S+) ", stats.prometheus(counters.snapshot()), re.M)
    assert len(metrics) == len(stats.COUNTERS) + 6
    for metric in metrics:
        counter = metric.removeprefix("ciphermilter_").removesuffix("_total")
        assert (counter in stats.COUNTERS and re.search(rf"\b{counter}\b", documented)) or metric in documented


def test_stats_command_shows_results_and_the_store(tmp_path):
    counters = stats.Counters()
    found = next(case for case in corpus_cases() if case["id"] == "smime-env-not-ours")
    counters.record(core.process(case_message(found), case_envelope(found), None), 0.01)
    counters.store = {"reachable": False, "earliest_key_expiry": 2_000_000_000}
    path = tmp_path / "stats.json"
    stats.Exporter(counters, str(path), interval=60).write()
    shown = CliRunner().invoke(main, ["stats", "--file", str(path)]).output
    assert "\nresults: not-internal 1\n" in shown
    assert "\nkey store: UNREACHABLE, first private key expires 2033-05-18\n" in shown
