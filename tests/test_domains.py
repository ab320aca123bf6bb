import pytest

from ciphermilter.core.domains import DomainError, address_domain, matches, normalise


@pytest.mark.parametrize("raw, expected", [("Example.COM.", "example.com"), ("*.Corp.example", "*.corp.example"),
                                           ("bücher.example", "xn--bcher-kva.example")])
def test_normalise(raw, expected):
    assert normalise(raw) == expected


@pytest.mark.parametrize("raw", ["", "a..b", "exa mple.com", "*", "*.", "-a.com", "a.*.com", "a@b.com"])
def test_normalise_refuses(raw):
    with pytest.raises(DomainError):
        normalise(raw)


def test_wildcard_matches_subdomains_only():
    assert matches("mail.corp.example", "*.corp.example")
    assert matches("a.b.corp.example", "*.corp.example")
    assert not matches("corp.example", "*.corp.example")
    assert not matches("evilcorp.example", "*.corp.example")
    assert matches("CORP.example.", "corp.example")


@pytest.mark.parametrize("address, domain", [("<bob@Corp.Example>", "corp.example"), ("bob@x.y", "x.y"), ("<>", ""),
                                              ("postmaster", "")])
def test_address_domain(address, domain):
    assert address_domain(address) == domain
