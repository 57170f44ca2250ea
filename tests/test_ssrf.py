"""The webhook SSRF guard: every spelling of a private address is refused, public ones pass, and
a redirect is followed only to a location that passes the same checks (real HTTP servers on
loopback; nothing leaves the machine)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from _hooks import Hooks, hook_server
from modelyard.errors import ConfigError
from modelyard.monitor.actions import check_webhook_url, send_alert

PRIVATE_URLS = [
    "http://127.0.0.1/x",
    "http://2130706433/x",  # 127.0.0.1 in decimal
    "http://0x7f.1/x",  # hex, short form
    "http://0177.0.0.1/x",  # octal
    "http://0x7f000001/x",
    "http://017700000001/x",
    "http://0/x",  # 0.0.0.0
    "http://[::1]/x",
    "http://[::]/x",
    "http://[::ffff:127.0.0.1]/x",  # IPv4-mapped
    "http://[::ffff:7f00:1]/x",
    "http://[::7f00:1]/x",  # IPv4-compatible
    "http://[::127.0.0.1]/x",
    "http://[::ffff:0:7f00:1]/x",  # IPv4-translated (SIIT)
    "http://[2002:7f00:1::]/x",  # 6to4 of 127.0.0.1
    "http://[2002:a9fe:a9fe::1]/x",  # 6to4 of the metadata address
    "http://[64:ff9b::7f00:1]/x",  # NAT64 of 127.0.0.1
    "http://[64:ff9b::a9fe:a9fe]/x",  # NAT64 of 169.254.169.254
    "http://[64:ff9b:1::a00:1]/x",  # local-use NAT64 of 10.0.0.1
    "http://169.254.169.254/latest/meta-data",
    "http://[fd00:ec2::254]/latest/meta-data",  # AWS metadata over IPv6
    "http://[::ffff:169.254.169.254]/x",
    "http://[fe80::1]/x",
    "http://[fc00::1]/x",
    "http://[fd12:3456::1]/x",
    "http://10.0.0.1/x",
    "http://172.16.0.1/x",
    "http://192.168.1.1/x",
    "http://100.64.0.1/x",  # CGNAT
    "http://[ff02::1]/x",  # multicast
    "http://224.0.0.1/x",
]


@pytest.mark.parametrize("url", PRIVATE_URLS)
def test_every_form_of_a_private_address_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="refused"):
        check_webhook_url(url)


@pytest.mark.parametrize(
    "address", ["::ffff:7f00:1", "2002:7f00:1::", "64:ff9b::a9fe:a9fe", "::7f00:1", "fd00:ec2::254"]
)
def test_a_name_resolving_to_an_embedded_private_address_is_refused(address: str) -> None:
    with pytest.raises(ConfigError, match="refused"):
        check_webhook_url("https://hooks.example.com/x", resolver=lambda host, port: [address])


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "2606:4700::1111", "2002:5db8:d822::1", "64:ff9b::5db8:d822"]
)
def test_public_addresses_pass(address: str) -> None:
    target = check_webhook_url("https://hooks.example.com/x", resolver=lambda h, p: [address])
    assert target.address == address


def test_a_private_network_can_be_allowed_explicitly() -> None:
    target = check_webhook_url("http://2130706433/x", allow=["127.0.0.0/8"])
    assert target.address == "127.0.0.1"  # connects to the address it checked


@pytest.fixture
def hooks() -> Iterator[str]:
    with hook_server() as url:
        yield url


def test_a_redirect_to_an_allowed_location_is_followed(hooks: str) -> None:
    Hooks.redirect_to = "/final"
    result = send_alert({"policy": "p"}, f"{hooks}/redirect", allow=["127.0.0.1/32"])
    assert result.sent, result.error
    assert (Hooks.paths, Hooks.received) == (["/final"], [{"policy": "p"}])


@pytest.mark.parametrize(
    "location",
    [
        "http://127.0.0.2:{port}/final",  # loopback, but not the allowed address
        "http://[::ffff:7f00:2]:{port}/final",
        "http://169.254.169.254/latest/meta-data",
        "http://2130706434:{port}/final",  # 127.0.0.2 in decimal
    ],
)
def test_each_redirect_hop_is_checked_again(hooks: str, location: str) -> None:
    Hooks.redirect_to = location.format(port=hooks.rsplit(":", 1)[1])
    result = send_alert({"policy": "p"}, f"{hooks}/redirect", allow=["127.0.0.1/32"])
    assert not result.sent
    assert result.error is not None
    assert "refused" in result.error
    assert Hooks.received == []


def test_redirect_loops_stop(hooks: str) -> None:
    Hooks.redirect_to = "/redirect"
    result = send_alert({"policy": "p"}, f"{hooks}/redirect", allow=["127.0.0.1/32"])
    assert not result.sent
    assert result.error is not None
    assert "redirects" in result.error
