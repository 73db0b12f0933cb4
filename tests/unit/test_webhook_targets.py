"""Which webhook targets are refused, in every way of writing an address.

Nothing here connects anywhere or asks a real DNS server: addresses are judged by
`refusal`, URLs by `check_url` with a fake resolver.
"""

from __future__ import annotations

import ipaddress
import socket

import pytest

from ledger.webhooks.targets import TargetRefused, check_url, parse_target, refusal

# Every block of the IANA IPv4 and IPv6 Special-Purpose Address Registries, multicast and
# the deprecated site-local block; none of them may receive webhooks in production.
SPECIAL_IPV4 = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.31.196.0/24",
    "192.52.193.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "192.175.48.0/24",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "255.255.255.255/32",
]
SPECIAL_IPV6 = [
    "::1/128",
    "::/128",
    # ::ffff:0:0/96 (IPv4-mapped) is judged by the IPv4 address it maps to: see `embedded`.
    "64:ff9b:1::/48",
    "100::/64",
    "2001::/23",
    "2001::/32",
    "2001:2::/48",
    "2001:3::/32",
    "2001:4:112::/48",
    "2001:10::/28",
    "2001:20::/28",
    "2001:30::/28",
    "2001:db8::/32",
    "2002::/16",
    "2620:4f:8000::/48",
    "3fff::/20",
    "5f00::/16",
    "fc00::/7",
    "fe80::/10",
    "fec0::/10",
    "ff00::/8",
]


def samples(block: str) -> list[str]:
    """The first, a middle and the last address of a block."""
    network = ipaddress.ip_network(block)
    middle = network.network_address + network.num_addresses // 2
    return sorted({str(network.network_address), str(middle), str(network.broadcast_address)})


SPECIAL_ADDRESSES = [a for block in SPECIAL_IPV4 + SPECIAL_IPV6 for a in samples(block)]

# 127.0.0.1 in fullwidth digits and dots, which IDNA maps to ASCII.
FULLWIDTH_LOOPBACK = "\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11"
PRIVATE_IPV4 = ["127.0.0.1", "10.1.2.3", "192.168.0.1", "100.64.0.1", "0.0.0.0", "198.18.0.9"]
METADATA_IPV4 = ["169.254.169.254", "169.254.170.2", "100.100.100.200"]


def embedded(ipv4: str) -> list[str]:
    """The IPv6 forms that carry an IPv4 address, and reach it where a translator exists."""
    v4 = ipaddress.IPv4Address(ipv4)
    value = int(v4)
    high, low = value >> 16, value & 0xFFFF
    packed = v4.packed
    return [
        f"::ffff:{v4}",  # IPv4-mapped
        f"::{v4}",  # IPv4-compatible (deprecated)
        f"::ffff:0:{v4}",  # IPv4-translated (SIIT)
        f"64:ff9b::{v4}",  # NAT64, well-known prefix
        f"64:ff9b:1::{v4}",  # NAT64, local-use prefix, /96 embedding
        f"64:ff9b:1:{high:x}:{low >> 8:x}:{(low & 0xFF) << 8:x}::",  # local-use, /48 embedding
        f"64:ff9b:1:0:{packed[0]:x}:{packed[1]:02x}{packed[2]:02x}:{packed[3]:x}00:0",  # /64
        f"2002:{high:x}:{low:x}::1",  # 6to4
        # Teredo: server 65.54.227.120, client stored inverted in the last 32 bits.
        f"2001:0:4136:e378:8000:63bf:{high ^ 0xFFFF:x}:{low ^ 0xFFFF:x}",
    ]


def fake_dns(table: dict[str, list[str]]):
    """A resolver answering from `table`; any other name does not resolve."""

    def lookup(host: str, port: int) -> list[str]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return table[host]

    return lookup


NO_DNS = fake_dns({})


@pytest.mark.parametrize("address", SPECIAL_ADDRESSES)
def test_every_special_purpose_address_is_refused(address):
    assert refusal(ipaddress.ip_address(address), allow_private=False) is not None


@pytest.mark.parametrize("form", [f for a in PRIVATE_IPV4 + METADATA_IPV4 for f in embedded(a)])
def test_ipv6_forms_embedding_a_private_ipv4_address_are_refused(form):
    assert refusal(ipaddress.ip_address(form), allow_private=False) is not None


@pytest.mark.parametrize(
    "form",
    [*METADATA_IPV4, "fd00:ec2::254", *(f for a in METADATA_IPV4 for f in embedded(a))],
)
def test_metadata_addresses_are_refused_in_every_form_even_with_private_targets_allowed(form):
    assert refusal(ipaddress.ip_address(form), allow_private=True) == "a cloud metadata address"


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "93.184.215.14",
        "1.1.1.1",
        "2606:4700:4700::1111",
        "2001:4860:4860::8888",
        "::ffff:8.8.8.8",  # mapped: the IPv4 address is what is reached
        "64:ff9b::8.8.8.8",  # NAT64 of a public address (DNS64 answers this way)
    ],
)
def test_public_addresses_are_accepted(address):
    assert refusal(ipaddress.ip_address(address), allow_private=False) is None


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "10.0.0.1", "fd12::1", "fe80::1"])
def test_loopback_and_private_addresses_are_allowed_when_settings_allow_them(address):
    assert refusal(ipaddress.ip_address(address), allow_private=True) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://2130706433/",  # 127.0.0.1 as one decimal number
        "http://0x7f000001/",
        "http://0x7f.1/",
        "http://0177.0.0.1/",
        "http://017700000001/",
        "http://127.1/",
        "http://127.0.0.01/",
        "http://127.0.0.1./",
        "http://0/",
        "http://2852039166/",  # 169.254.169.254
        "http://0xa9fea9fe/",
        "http://0251.0376.0251.0376/",
        "http://8.8.8.8.8/",
        "http://8.8.0x8.8/",
    ],
)
def test_numeric_hosts_not_written_as_a_dotted_quad_are_refused(url):
    for allow_private in (False, True):
        with pytest.raises(TargetRefused):
            check_url(url, allow_private=allow_private, lookup=NO_DNS)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::127.0.0.1]/",
        "http://[::ffff:0:127.0.0.1]/",
        "http://[64:ff9b::10.0.0.1]/",
        "http://[64:ff9b:1::a00:1]/",
        "http://[2002:a00:1::1]/",
        "http://[0:0:0:0:0:ffff:7f00:1]/",
        "http://[2001:db8::1]/",
        "http://[3fff::1]/",
        "http://192.0.0.1/",
        "http://192.88.99.1/",
        "http://255.255.255.255/",
        "http://①②⑦.0.0.1/",  # IDNA maps these to 127.0.0.1
        "http://" + FULLWIDTH_LOOPBACK + "/",
    ],
)
def test_literal_private_addresses_are_refused_and_named(url):
    host = parse_target(url).host
    with pytest.raises(TargetRefused) as refused:
        check_url(url, allow_private=False, lookup=NO_DNS)
    assert host in refused.value.message


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/",
        "http://[fd00:ec2::254]/",
        "http://[::ffff:169.254.169.254]/",
        "http://[::169.254.169.254]/",
        "http://[::ffff:0:a9fe:a9fe]/",
        "http://[64:ff9b::169.254.169.254]/",
        "http://[64:ff9b:1:a9fe:a9:fe00::]/",
        "http://[2002:a9fe:a9fe::]/",
        "http://[2001:0:4136:e378:8000:63bf:5601:5601]/",
    ],
)
def test_metadata_literals_are_refused_even_with_private_targets_allowed(url):
    with pytest.raises(TargetRefused, match="metadata"):
        check_url(url, allow_private=True, lookup=NO_DNS)


def test_port_zero_is_refused():
    with pytest.raises(TargetRefused, match="port"):
        parse_target("http://93.184.215.14:0/hook")


@pytest.mark.parametrize(
    "addresses",
    [["127.0.0.1"], ["93.184.215.14", "10.0.0.8"], ["::1"], ["64:ff9b::a00:8"], ["fc00::8"]],
)
def test_a_host_resolving_to_a_private_address_is_refused_without_saying_which(addresses):
    lookup = fake_dns({"hooks.internal.example": addresses})
    with pytest.raises(TargetRefused) as refused:
        check_url("https://hooks.internal.example/", allow_private=False, lookup=lookup)
    assert "not publicly routable" in refused.value.message
    for address in addresses:
        assert address not in refused.value.message


def test_a_host_resolving_to_a_metadata_address_is_refused_without_saying_which():
    lookup = fake_dns({"metadata.internal.example": ["fd00:ec2::254"]})
    with pytest.raises(TargetRefused) as refused:
        check_url("http://metadata.internal.example/", allow_private=True, lookup=lookup)
    assert "fd00" not in refused.value.message


def test_a_host_resolving_to_public_addresses_is_accepted():
    lookup = fake_dns({"hooks.example.com": ["93.184.215.14", "2606:4700:4700::1111"]})
    target = check_url("https://hooks.example.com/in", allow_private=False, lookup=lookup)
    assert (target.host, target.port, target.path) == ("hooks.example.com", 443, "/in")


@pytest.mark.parametrize(
    ("url", "normalized"),
    [
        ("https://93.184.215.14/hooks/tally", "https://93.184.215.14/hooks/tally"),
        (
            "http://93.184.215.14:8080/hoöks/ü?q=é#ä",
            "http://93.184.215.14:8080/ho%C3%B6ks/%C3%BC?q=%C3%A9#%C3%A4",
        ),
        ("https://Bücher.Example/a%20b", "https://xn--bcher-kva.example/a%20b"),
        ("HTTPS://Hooks.Example.COM", "https://hooks.example.com"),
        ("http://[::FFFF:8.8.8.8]:81/x", "http://[::ffff:8.8.8.8]:81/x"),
        ("http://" + FULLWIDTH_LOOPBACK + ":8080/", "http://127.0.0.1:8080/"),
    ],
)
def test_urls_are_normalized_to_ascii(url, normalized):
    target = parse_target(url)
    assert target.url == normalized
    assert target.url.isascii() and target.path.isascii() and target.host.isascii()


@pytest.mark.parametrize(
    "url",
    [
        "http://a..ü.example/",  # an empty label cannot be IDNA-encoded
        "http://" + "ü" * 64 + ".example/",  # a label longer than 63 octets once encoded
        "http://[fe80::1%25eth0]/",  # a zone belongs to one host's interfaces
        "http://93.184.215.14/" + "ü" * 400,  # too long once percent-encoded
    ],
)
def test_urls_that_cannot_be_normalized_are_refused(url):
    with pytest.raises(TargetRefused):
        parse_target(url)
