"""The SSRF guard's decisions (``alerts.netguard``): which addresses are refused and
why, what an opt-in opens, and how the config keys are read. The same decisions at
connect time, through the real ``HttpClient``, are in ``test_ssrf.py``.

Ranges follow the IANA IPv4 and IPv6 Special-Purpose Address Registries
(https://www.iana.org/assignments/iana-ipv4-special-registry/,
https://www.iana.org/assignments/iana-ipv6-special-registry/) and RFC 4380 (Teredo),
RFC 3056 (6to4), RFC 6052 and RFC 8215 (NAT64 prefixes).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from alerts.config import load_config
from alerts.errors import ConfigError
from alerts.netguard import NetworkPolicy, classify, parse_address
from alerts.runtime import http_limits

REFUSED = [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("10.0.0.1", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("100.64.0.1", "CGNAT"),
    ("100.127.255.255", "CGNAT"),
    ("169.254.169.254", "link-local"),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("255.255.255.255", "broadcast"),
    ("240.0.0.1", "reserved"),
    ("192.0.0.8", "reserved"),
    ("192.88.99.1", "reserved"),
    ("192.0.2.1", "documentation"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.9", "documentation"),
    ("198.18.0.1", "benchmarking"),
    ("198.19.255.255", "benchmarking"),
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("::ffff:127.0.0.1", "IPv4-mapped loopback"),
    ("::ffff:169.254.169.254", "IPv4-mapped link-local"),
    ("::ffff:10.0.0.1", "IPv4-mapped private"),
    ("::127.0.0.1", "IPv4-compatible loopback"),
    ("::a9fe:a9fe", "IPv4-compatible link-local"),
    ("2002:7f00:1::", "6to4 loopback"),
    ("2002:a9fe:a9fe::1", "6to4 link-local"),
    ("2002:c0a8:101::1", "6to4 private"),
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "Teredo loopback"),  # client 127.0.0.1
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo documentation"),  # RFC 4380's 192.0.2.45
    ("64:ff9b::7f00:1", "NAT64 loopback"),
    ("64:ff9b::a9fe:a9fe", "NAT64 link-local"),
    ("64:ff9b:1::a00:1", "private"),  # NAT64 local-use prefix
    ("fc00::1", "private"),
    ("fd12:3456:789a::1", "private"),
    ("fec0::1", "private"),
    ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local"),
    ("ff02::1", "multicast"),
    ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation"),
    ("100::1", "reserved"),
    ("2001:2::1", "reserved"),
    ("5f00::1", "reserved"),
    ("4000::1", "reserved"),  # outside global unicast 2000::/3
]

PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.215.14",
    "100.128.0.1",  # just past CGNAT
    "172.32.0.1",  # just past 172.16/12
    "198.20.0.1",  # just past benchmarking
    "2606:4700:4700::1111",
    "2a00:1450:4001:82b::200e",
    "::ffff:8.8.8.8",
    "2002:808:808::1",  # 6to4 of a public address
    "64:ff9b::808:808",  # NAT64 of a public address
    "2001:0:4136:e378:8000:63bf:f7f7:f7f7",  # Teredo, client 8.8.8.8
]


@pytest.mark.parametrize(("address", "reason"), REFUSED, ids=[a for a, _ in REFUSED])
def test_refused_ranges(address: str, reason: str) -> None:
    assert classify(parse_address(address)) == reason
    assert NetworkPolicy().refusal(address) == reason


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert classify(parse_address(address)) is None
    assert NetworkPolicy().refusal(address) is None


@pytest.mark.parametrize(("address", "reason"), REFUSED, ids=[a for a, _ in REFUSED])
def test_opting_in_allows_everything(address: str, reason: str) -> None:
    assert NetworkPolicy(True).refusal(address) is None


def test_opting_in_to_networks_opens_only_those() -> None:
    policy = NetworkPolicy(
        (ipaddress.ip_network("10.1.0.0/16"), ipaddress.ip_network("fd00:1::/32"))
    )
    assert policy.refusal("10.1.2.3") is None
    assert policy.refusal("::ffff:10.1.2.3") is None  # the same host, IPv4-mapped
    assert policy.refusal("fd00:1::5") is None
    assert policy.refusal("10.2.0.1") == "private"
    assert policy.refusal("127.0.0.1") == "loopback"
    assert policy.refusal("169.254.169.254") == "link-local"
    assert policy.refusal("8.8.8.8") is None


def test_not_an_address_is_an_error() -> None:
    with pytest.raises(ValueError, match="does not appear to be"):
        NetworkPolicy().refusal("example.org")


def _config(tmp_path: Path, http: str, source: str) -> Path:
    config = tmp_path / "config"
    config.mkdir(exist_ok=True)
    (config / "alerts.toml").write_text(
        f'[http]\n{http}\n[topics.news]\ndescription = "News"\n\n'
        '[[sources]]\nid = "a"\nkind = "feed"\nurl = "https://a.example/rss"\n'
        f'topics = ["news"]\n{source}\n'
        '[[sources]]\nid = "b"\nkind = "feed"\nurl = "https://b.example/rss"\n'
        'topics = ["news"]\n'
    )
    return config


def test_config_keys_per_source_and_service_wide(tmp_path: Path) -> None:
    config = load_config(
        _config(tmp_path, 'allow_private_network = ["10.1.0.0/16"]', "allow_private_network = true")
    )
    assert config.sources["a"].allow_private_network is True
    assert config.sources["b"].allow_private_network is None  # the service-wide one applies
    assert http_limits(config).allow_private_network == (ipaddress.ip_network("10.1.0.0/16"),)


def test_config_default_is_refuse(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, "", ""))
    assert config.http.allow_private_network is False
    assert http_limits(config).allow_private_network is False
    assert config.sources["a"].allow_private_network is None


@pytest.mark.parametrize(
    ("http", "source", "problem"),
    [
        pytest.param(
            'allow_private_network = "yes"',
            "",
            "alerts.toml: http.allow_private_network: expected true, false or a list of networks",
            id="string",
        ),
        pytest.param(
            "",
            'allow_private_network = ["10.0.0.1/8"]',
            "alerts.toml: sources[0].allow_private_network: not a network: 10.0.0.1/8 has host bits set",
            id="host-bits",
        ),
        pytest.param(
            "",
            "allow_private_network = []",
            "alerts.toml: sources[0].allow_private_network: expected true, false or a list",
            id="empty-list",
        ),
        pytest.param(
            "allow_private_network = [10]",
            "",
            "alerts.toml: http.allow_private_network: expected true, false or a list",
            id="not-strings",
        ),
    ],
)
def test_bad_values_name_the_file_and_key(
    tmp_path: Path, http: str, source: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_config(tmp_path, http, source))
    assert any(problem in p for p in caught.value.problems), caught.value.problems
