"""The SSRF guard at connect time, through the real ``HttpClient`` and runtime.

Loopback fixtures show refused-by-default, allowed-when-opted-in, a public-looking
name that resolves to 127.0.0.1 and redirects to refused addresses. The other
ranges are checked with injected resolver answers and literal IP hosts; a tripwire
on the event loop's ``sock_connect`` fails any test that would open a connection to
a non-loopback address, so nothing here sends traffic off this machine even if the
guard breaks.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from alerts.errors import AddressRefused, FetchError
from alerts.fixture_server import FixtureServer, Reply
from alerts.sources.http import HttpClient, HttpLimits

from .support import FeedServer, feed_server, runtime_on

HINT = "set allow_private_network = true on this source (or in [http] for every source)"


class StaticResolver(AbstractResolver):
    """DNS answers from a table; a name not in it does not exist (no real lookup)."""

    def __init__(self, answers: Mapping[str, Sequence[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        if host not in self.answers:
            raise OSError(f"no such host: {host}")
        return [_answer(host, ip, port) for ip in self.answers[host]]

    async def close(self) -> None:
        return None


def _answer(host: str, ip: str, port: int) -> ResolveResult:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    return ResolveResult(
        hostname=host, host=ip, port=port, family=family, proto=0, flags=socket.AI_NUMERICHOST
    )


@pytest.fixture(autouse=True)
async def tripwire() -> AsyncIterator[list[Any]]:
    """Fail, instead of connecting, when anything dials a non-loopback address."""
    loop = asyncio.get_running_loop()
    original = loop.sock_connect
    dialled: list[Any] = []

    async def loopback_only(sock: socket.socket, address: Any) -> None:
        if not ipaddress.ip_address(str(address[0]).split("%")[0]).is_loopback:
            dialled.append(address)
            raise AssertionError(f"the test tried to connect to {address}")
        await original(sock, address)

    loop.sock_connect = loopback_only  # type: ignore[method-assign]
    yield dialled
    del loop.sock_connect
    assert not dialled


@pytest.fixture
async def server() -> AsyncIterator[FixtureServer]:
    async with FixtureServer() as srv:
        srv.route("GET", "/feed", Reply.json({"ok": True}))
        yield srv


@pytest.fixture
async def http() -> AsyncIterator[HttpClient]:
    client = HttpClient(
        HttpLimits(timeout_s=10),
        resolver=StaticResolver(
            {
                "feeds.example": ["127.0.0.1"],
                "metadata.example": ["169.254.169.254"],
                "intranet.example": ["10.0.0.1", "fd00::1"],
                "mixed.example": ["10.0.0.1", "127.0.0.1"],
                "localhost": ["127.0.0.1", "::1"],
            }
        ),
    )
    yield client
    await client.close()


def _port(server: FixtureServer) -> int:
    return int(server.base_url.rsplit(":", 1)[1])


async def test_loopback_is_refused_by_default(server: FixtureServer, http: HttpClient) -> None:
    with pytest.raises(AddressRefused) as caught:
        await http.get(server.url("/feed"))
    assert str(caught.value) == f"refused to connect to 127.0.0.1 (loopback): {HINT} to allow it"
    assert (caught.value.address, caught.value.reason) == ("127.0.0.1", "loopback")
    assert server.requests == []


async def test_a_source_that_opts_in_reaches_loopback(
    server: FixtureServer, http: HttpClient
) -> None:
    response = await http.for_source(True).get(server.url("/feed"))
    assert response.json() == {"ok": True}
    assert len(server.requests) == 1


async def test_service_wide_opt_in_and_a_source_that_opts_out(server: FixtureServer) -> None:
    client = HttpClient(HttpLimits(allow_private_network=True))
    try:
        assert (await client.get(server.url("/feed"))).status == 200
        assert (await client.for_source(None).get(server.url("/feed"))).status == 200
        with pytest.raises(AddressRefused):
            await client.for_source(False).get(server.url("/feed"))
    finally:
        await client.close()
    assert len(server.requests) == 2


async def test_a_public_looking_name_that_resolves_to_loopback(
    server: FixtureServer, http: HttpClient
) -> None:
    url = f"http://feeds.example:{_port(server)}/feed"
    with pytest.raises(AddressRefused) as caught:
        await http.get(url)
    assert str(caught.value).startswith(
        "refused to connect to feeds.example (127.0.0.1, loopback): set allow_private_network"
    )
    assert server.requests == []
    assert (await http.for_source(True).get(url)).status == 200


async def test_a_connection_opened_for_an_opted_in_source_is_not_reused_by_another(
    server: FixtureServer, http: HttpClient
) -> None:
    opted_in = http.for_source(True)
    assert (await opted_in.get(server.url("/feed"))).status == 200
    with pytest.raises(AddressRefused):
        await http.get(server.url("/feed"))  # same host and port: a pooled connection waits
    assert (await opted_in.get(server.url("/feed"))).status == 200
    assert len(server.requests) == 2


def _only(network: str) -> HttpClient:
    return HttpClient(
        HttpLimits(timeout_s=10, allow_private_network=(ipaddress.ip_network(network),)),
        resolver=StaticResolver({"metadata.example": ["169.254.169.254"]}),
    )


@pytest.mark.parametrize(
    ("location", "host", "address", "reason"),
    [
        pytest.param("http://127.0.0.2:{port}/x", "127.0.0.2", "127.0.0.2", "loopback", id="ip"),
        pytest.param("http://[::1]:{port}/x", "::1", "::1", "loopback", id="ipv6"),
        pytest.param(
            "http://[::ffff:7f00:2]:{port}/x",
            "::ffff:7f00:2",
            "::ffff:7f00:2",
            "IPv4-mapped loopback",
            id="ipv4-mapped",
        ),
        pytest.param(
            "http://metadata.example/latest/meta-data/",
            "metadata.example",
            "169.254.169.254",
            "link-local",
            id="name-to-metadata",
        ),
        pytest.param(
            "http://169.254.169.254/latest/meta-data/",
            "169.254.169.254",
            "169.254.169.254",
            "link-local",
            id="metadata-literal",
        ),
    ],
)
async def test_a_redirect_from_an_allowed_fixture_to_a_refused_address(
    server: FixtureServer, location: str, host: str, address: str, reason: str
) -> None:
    server.route("GET", "/moved", Reply.redirect(location.format(port=_port(server))))
    client = _only("127.0.0.1/32")
    try:
        with pytest.raises(AddressRefused) as caught:
            await client.get(server.url("/moved"))
    finally:
        await client.close()
    assert (caught.value.host, caught.value.address, caught.value.reason) == (
        host,
        address,
        reason,
    )
    assert [r.path for r in server.requests] == ["/moved"]


async def test_a_redirect_within_what_is_allowed_is_followed(server: FixtureServer) -> None:
    server.route("GET", "/moved", Reply.redirect(f"http://localhost:{_port(server)}/feed"))
    client = HttpClient(
        HttpLimits(allow_private_network=(ipaddress.ip_network("127.0.0.1/32"),)),
        resolver=StaticResolver({"localhost": ["::1", "127.0.0.1"]}),
    )
    try:
        response = await client.get(server.url("/moved"))
    finally:
        await client.close()
    assert response.json() == {"ok": True}  # ::1 was dropped, 127.0.0.1 answered
    assert [r.path for r in server.requests] == ["/moved", "/feed"]


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("10.0.0.1", "private"),
        ("172.20.1.1", "private"),
        ("192.168.0.10", "private"),
        ("100.100.100.200", "CGNAT"),
        ("169.254.169.254", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.251", "multicast"),
        ("198.18.0.1", "benchmarking"),
        ("203.0.113.5", "documentation"),
        ("240.0.0.1", "reserved"),
        ("::ffff:169.254.169.254", "IPv4-mapped link-local"),
        ("::ffff:10.0.0.1", "IPv4-mapped private"),
        ("::a9fe:a9fe", "IPv4-compatible link-local"),
        ("2002:a9fe:a9fe::1", "6to4 link-local"),
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", "Teredo loopback"),
        ("64:ff9b::a9fe:a9fe", "NAT64 link-local"),
        ("fd00:ec2::254", "private"),
        ("fe80::1", "link-local"),
        ("ff02::fb", "multicast"),
    ],
)
async def test_injected_resolver_answers_are_refused_at_connect_time(
    answer: str, reason: str
) -> None:
    resolver = StaticResolver({"internal.example": [answer]})
    client = HttpClient(HttpLimits(timeout_s=10), resolver=resolver)
    try:
        with pytest.raises(AddressRefused) as caught:
            await client.get("https://internal.example/latest/meta-data/")
    finally:
        await client.close()
    assert str(caught.value) == (
        f"refused to connect to internal.example ({answer}, {reason}): {HINT} to allow it"
    )
    assert resolver.asked == ["internal.example"]


@pytest.mark.parametrize(
    ("url", "address", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254", "link-local"),
        ("http://10.0.0.1/", "10.0.0.1", "private"),
        ("http://0.0.0.0:9/", "0.0.0.0", "unspecified"),
        ("http://[::ffff:a9fe:a9fe]/", "::ffff:a9fe:a9fe", "IPv4-mapped link-local"),
        ("http://[fe80::1]/", "fe80::1", "link-local"),
        ("https://100.64.0.1/", "100.64.0.1", "CGNAT"),
    ],
)
async def test_literal_ip_hosts_are_refused_without_dns(
    http: HttpClient, url: str, address: str, reason: str
) -> None:
    with pytest.raises(AddressRefused) as caught:
        await http.get(url)
    assert (caught.value.address, caught.value.reason) == (address, reason)


async def test_a_name_with_only_refused_answers_names_the_first(http: HttpClient) -> None:
    with pytest.raises(AddressRefused, match=r"intranet\.example \(10\.0\.0\.1, private\)"):
        await http.get("https://intranet.example/")


async def test_refused_answers_are_dropped_and_allowed_ones_used(server: FixtureServer) -> None:
    client = HttpClient(
        HttpLimits(allow_private_network=(ipaddress.ip_network("127.0.0.0/8"),)),
        resolver=StaticResolver({"mixed.example": ["10.0.0.1", "127.0.0.1"]}),
    )
    try:
        response = await client.get(f"http://mixed.example:{_port(server)}/feed")
    finally:
        await client.close()
    assert response.status == 200  # 10.0.0.1 was never dialled (the tripwire says so)


async def test_the_dns_cache_does_not_lend_answers_across_policies(
    server: FixtureServer, http: HttpClient
) -> None:
    url = f"http://feeds.example:{_port(server)}/feed"
    assert (await http.for_source(True).get(url)).status == 200
    with pytest.raises(AddressRefused):
        await http.get(url)


async def test_a_refusal_is_not_mistaken_for_other_connect_errors(http: HttpClient) -> None:
    with pytest.raises(FetchError) as caught:
        await http.get("https://nowhere.example/")
    assert not isinstance(caught.value, AddressRefused)
    assert "ClientConnectorDNSError fetching https://nowhere.example/" in str(caught.value)


# --- through the runtime: the per-source switch reaches the shared client ---------------


def _write(tmp_path: Path, server: FeedServer, http: str, opted: str) -> Path:
    config = tmp_path / "config"
    config.mkdir()
    (config / "alerts.toml").write_text(
        f'[http]\n{http}\n[topics.news]\ndescription = "News"\n\n'
        '[destinations.console]\nsink = "console"\n\n'
        '[[routes]]\ndestination = "console"\ntopics = ["news"]\n\n'
        f'[[sources]]\nid = "opted"\nkind = "feed"\nurl = "{server.feed("opted", "a")}"\n'
        f'topics = ["news"]\n{opted}\n\n'
        f'[[sources]]\nid = "plain"\nkind = "feed"\nurl = "{server.feed("plain", "a")}"\n'
        'topics = ["news"]\n'
    )
    return config


async def test_a_reload_applies_a_changed_switch(tmp_path: Path) -> None:
    async with feed_server() as server:
        config = _write(tmp_path, server, "", "")
        async with runtime_on(tmp_path, config) as runtime:
            assert not (await runtime.scheduler.poll_now("plain")).ok
            main = config / "alerts.toml"
            main.write_text(
                main.read_text().replace("[http]\n", "[http]\nallow_private_network = true\n")
            )
            assert await runtime.reload()
            assert (await runtime.scheduler.poll_now("plain")).ok
            main.write_text(main.read_text().replace("= true", "= false"))
            assert await runtime.reload()
            assert not (await runtime.scheduler.poll_now("plain")).ok
        assert server.hits["plain"] == 1


async def _poll_both(tmp_path: Path, config: Path) -> dict[str, str | None]:
    async with runtime_on(tmp_path, config) as runtime:
        reports = [await runtime.scheduler.poll_now(s) for s in ("opted", "plain")]
        rows = {r.source_id: r.last_error for r in await runtime.store.list_sources()}
    assert {r.source_id: r.error for r in reports} == rows
    return rows


@pytest.mark.parametrize(
    ("http", "opted", "expected"),
    [
        pytest.param("", "allow_private_network = true", {"opted"}, id="per-source"),
        pytest.param("allow_private_network = true", "", {"opted", "plain"}, id="service-wide"),
        pytest.param(
            "allow_private_network = true",
            "allow_private_network = false",
            {"plain"},
            id="source-opts-out",
        ),
        pytest.param(
            'allow_private_network = ["10.0.0.0/8"]',
            'allow_private_network = ["127.0.0.0/8"]',
            {"opted"},
            id="networks",
        ),
        pytest.param("", "", set(), id="nobody"),
    ],
)
async def test_the_switch_per_source_and_service_wide(
    tmp_path: Path, http: str, opted: str, expected: set[str]
) -> None:
    async with feed_server() as server:
        errors = await _poll_both(tmp_path, _write(tmp_path, server, http, opted))
        assert {sid for sid, error in errors.items() if error is None} == expected
        assert set(server.hits) == expected  # a refused source sent nothing
    for sid in {"opted", "plain"} - expected:
        assert f"refused to connect to 127.0.0.1 (loopback): {HINT}" in (errors[sid] or "")
