"""Where webhooks may be sent: http(s) URLs whose every address is publicly routable.

An address is publicly routable when it is IPv4 or global-unicast IPv6 (2000::/3) outside
every block of the IANA IPv4 and IPv6 Special-Purpose Address Registries, multicast and
the old site-local block. Blocks the registries call globally reachable (AS112, AMT, the
PCP and TURN anycast addresses) are refused too: they are infrastructure, never a
receiver. An IPv6 address that carries an IPv4 address (mapped, compatible, translated,
NAT64, 6to4, Teredo) is judged by the IPv4 address it reaches as well as by its own block.

Private, loopback, link-local and reserved addresses are allowed only when the settings
say so (development and tests). Cloud metadata addresses are refused always, in every
form: a webhook must never be a way to read a host's credentials. Refusals name a literal
address (the caller wrote it) but never what a host name resolved to, so that the API does
not map a private network for whoever asks.

URLs are normalized before anything else: the host IDNA-encoded and lowercased, non-ASCII
characters of the path and query percent-encoded, so that what is stored is what is sent.
IPv4 addresses must be written as four decimal numbers: the resolver would read
`2130706433`, `0x7f.1` or `0177.0.0.1` as 127.0.0.1, so such hosts are refused outright.

The dispatcher resolves once, checks the addresses, and connects to a checked address: a
DNS answer that changes between the check and the connection cannot redirect it.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

from ledger.errors import InvalidRequest
from ledger.transaction_request import UNSTORABLE

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# A host name and port to the addresses they resolve to (raises OSError when they don't).
Lookup = Callable[[str, int], list[str]]

MAX_URL_LENGTH = 2048
METADATA_REASON = "a cloud metadata address"
PRIVATE_REASON = "a loopback, private, link-local, multicast or reserved address"

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(address)
    for address in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack instance metadata
        "fd00:ec2::254",  # AWS instance metadata over IPv6
        "169.254.170.2",  # AWS ECS task credentials
        "169.254.170.23",  # AWS EKS Pod Identity credentials
        "fd00:ec2::23",  # AWS EKS Pod Identity credentials over IPv6
        "100.100.100.200",  # Alibaba Cloud instance metadata
    )
)


def _networks(*blocks: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(block) for block in blocks)


# IANA IPv4 Special-Purpose Address Registry, every entry, plus multicast.
SPECIAL_IPV4 = _networks(
    "0.0.0.0/8",  # "this network"
    "10.0.0.0/8",  # private
    "100.64.0.0/10",  # shared address space (carrier-grade NAT)
    "127.0.0.0/8",  # loopback
    "169.254.0.0/16",  # link-local
    "172.16.0.0/12",  # private
    "192.0.0.0/24",  # IETF protocol assignments (DS-Lite, PCP and TURN anycast, ...)
    "192.0.2.0/24",  # documentation (TEST-NET-1)
    "192.31.196.0/24",  # AS112-v4
    "192.52.193.0/24",  # AMT
    "192.88.99.0/24",  # deprecated 6to4 relay anycast
    "192.168.0.0/16",  # private
    "192.175.48.0/24",  # direct delegation AS112 service
    "198.18.0.0/15",  # benchmarking
    "198.51.100.0/24",  # documentation (TEST-NET-2)
    "203.0.113.0/24",  # documentation (TEST-NET-3)
    "224.0.0.0/4",  # multicast
    "240.0.0.0/4",  # reserved
    "255.255.255.255/32",  # limited broadcast
)
# Only global unicast space can be public; inside it, these blocks of the IANA IPv6
# Special-Purpose Address Registry are not. Everything outside 2000::/3 (::1, ::,
# 100::/64, 5f00::/16, fc00::/7, fe80::/10, fec0::/10, ff00::/8, ...) is refused by that.
GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")
SPECIAL_IPV6 = _networks(
    "2001::/23",  # IETF protocol assignments: Teredo, benchmarking, ORCHID, AMT, ...
    "2001:db8::/32",  # documentation
    "2002::/16",  # 6to4
    "2620:4f:8000::/48",  # direct delegation AS112 service
    "3fff::/20",  # documentation
)
# Forms of IPv6 address that carry an IPv4 address in their last 32 bits.
IPV4_MAPPED = ipaddress.ip_network("::ffff:0:0/96")
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")
NAT64 = ipaddress.ip_network("64:ff9b::/96")
# RFC 8215 local-use NAT64: the operator picks the prefix length, so any RFC 6052 one.
NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
NAT64_LOCAL_PREFIX_LENGTHS = (48, 56, 64, 96)

# WHATWG URL: a host whose last label is a number is an IPv4 address, in whatever base.
NUMERIC_LABEL = re.compile(r"(?:[0-9]+|0[xX][0-9a-fA-F]*)")
NON_ASCII = re.compile(r"[^\x00-\x7f]+")


class TargetRefused(InvalidRequest):
    """A webhook URL that Tally will not send to."""

    def __init__(self, message: str) -> None:
        super().__init__("webhook_url_refused", message, field="url")


@dataclass(frozen=True)
class Target:
    """A parsed, normalized webhook URL: where to connect and what to ask for."""

    scheme: str
    host: str
    port: int
    path: str
    url: str

    @property
    def host_is_address(self) -> bool:
        return _address(self.host) is not None


def _address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _percent_encoded(part: str) -> str:
    return NON_ASCII.sub(lambda match: quote(match.group(0), safe=""), part)


def _normalized_host(hostname: str) -> str:
    """The host as the resolver must see it: ASCII, lowercase, IPv4 as a dotted quad."""
    host = hostname.lower()
    if ":" in host:  # urlsplit allows a colon only between brackets: an IPv6 literal
        if "%" in host:
            raise TargetRefused("the URL's host must not carry an IPv6 zone")
        if not isinstance(_address(host), ipaddress.IPv6Address):
            raise TargetRefused("the URL's host is not a valid IPv6 address")
        return host
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise TargetRefused("the URL's host is not a valid domain name") from None
    labels = host.removesuffix(".").split(".")
    if NUMERIC_LABEL.fullmatch(labels[-1]) and not isinstance(
        _address(host), ipaddress.IPv4Address
    ):
        raise TargetRefused("write an IPv4 address as four decimal numbers, like 192.0.2.1")
    return host


def parse_target(url: str) -> Target:
    """The target of an http(s) URL, normalized, or TargetRefused for anything else."""
    if len(url) > MAX_URL_LENGTH:
        raise TargetRefused(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if any(char.isspace() or ord(char) < 32 or ord(char) == 127 for char in url):
        raise TargetRefused("the URL contains whitespace or control characters")
    if UNSTORABLE.search(url):
        raise TargetRefused("the URL contains characters that cannot be stored")
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError:  # e.g. an unclosed IPv6 bracket
        raise TargetRefused("the URL cannot be parsed") from None
    scheme = parts.scheme.lower()
    if scheme not in {"http", "https"}:
        raise TargetRefused("the URL must start with http:// or https://")
    if not hostname:
        raise TargetRefused("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("the URL must not carry credentials; verify signatures instead")
    try:
        explicit_port = parts.port
    except ValueError:
        raise TargetRefused("the URL's port is not a valid port number") from None
    if explicit_port == 0:
        raise TargetRefused("the URL's port is not a valid port number: 0")
    host = _normalized_host(hostname)
    port = explicit_port or (443 if scheme == "https" else 80)
    netloc = f"[{host}]" if ":" in host else host
    if explicit_port is not None:
        netloc += f":{explicit_port}"
    path, query, fragment = (_percent_encoded(p) for p in (parts.path, parts.query, parts.fragment))
    normalized = urlunsplit((scheme, netloc, path, query, fragment))
    if len(normalized) > MAX_URL_LENGTH:
        raise TargetRefused(f"the URL, percent-encoded, is longer than {MAX_URL_LENGTH} characters")
    request_path = (path or "/") + (f"?{query}" if query else "")
    return Target(scheme, host, port, request_path, normalized)


def _rfc6052_embedded(address: ipaddress.IPv6Address, prefix_length: int) -> ipaddress.IPv4Address:
    """The IPv4 address a NAT64 prefix of this length embeds (RFC 6052 §2.2)."""
    packed = address.packed
    if prefix_length == 96:
        return ipaddress.IPv4Address(packed[12:])
    # Bits 64 to 71 (the "u" octet) are never part of the embedded address.
    spliced = packed[:8] + packed[9:]
    start = prefix_length // 8
    return ipaddress.IPv4Address(spliced[start : start + 4])


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """Every IPv4 address this IPv6 address may reach through a translator or tunnel."""
    found: list[ipaddress.IPv4Address] = []
    last_32 = ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    if any(address in block for block in (IPV4_MAPPED, IPV4_COMPATIBLE, IPV4_TRANSLATED, NAT64)):
        found.append(last_32)
    if address in NAT64_LOCAL:
        found += [_rfc6052_embedded(address, n) for n in NAT64_LOCAL_PREFIX_LENGTHS]
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found += address.teredo  # the server, and the client it relays to
    return found


def _publicly_routable(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv4Address):
        return not any(address in block for block in SPECIAL_IPV4)
    if address in IPV4_MAPPED or address in NAT64:
        # A dual-stack socket, or DNS64 with the well-known prefix, reaches the IPv4 address.
        return _publicly_routable(ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF))
    return address in GLOBAL_UNICAST and not any(address in block for block in SPECIAL_IPV6)


def refusal(address: IPAddress, *, allow_private: bool) -> str | None:
    """Why an address may not receive webhooks, or None when it may."""
    if isinstance(address, ipaddress.IPv6Address):
        address = ipaddress.IPv6Address(int(address))  # without a scope id
        reached: list[IPAddress] = [address, *embedded_ipv4(address)]
    else:
        reached = [address]
    if any(a in METADATA_ADDRESSES for a in reached):
        return METADATA_REASON
    if allow_private or _publicly_routable(address):
        return None
    return PRIVATE_REASON


def system_lookup(host: str, port: int) -> list[str]:
    """The addresses the system resolver gives for the host, without duplicates."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _resolved(target: Target, lookup: Lookup) -> list[str]:
    if target.host_is_address:
        return [target.host]
    try:
        addresses = lookup(target.host, target.port)
    except (OSError, UnicodeError):
        raise TargetRefused(f"the host {target.host!r} does not resolve") from None
    if not addresses:
        raise TargetRefused(f"the host {target.host!r} does not resolve")
    return addresses


def resolve_target(
    target: Target, *, allow_private: bool, lookup: Lookup = system_lookup
) -> list[str]:
    """Every address the host resolves to, all checked; TargetRefused if any is refused."""
    addresses = _resolved(target, lookup)
    for raw in addresses:
        # A scope id (fe80::1%eth0) belongs to a link-local address: checked without it.
        reason = refusal(ipaddress.ip_address(raw.split("%", 1)[0]), allow_private=allow_private)
        if reason is None:
            continue
        if target.host_is_address:
            raise TargetRefused(f"{target.host} is {reason}")
        raise TargetRefused(
            f"the host {target.host!r} resolves to an address that is not publicly routable"
        )
    return addresses


def check_url(url: str, *, allow_private: bool, lookup: Lookup = system_lookup) -> Target:
    """Registration-time check of a webhook URL: its form and every address it resolves to.

    The answer's `url` is the normalized form: the one to store.
    """
    target = parse_target(url)
    resolve_target(target, allow_private=allow_private, lookup=lookup)
    return target
