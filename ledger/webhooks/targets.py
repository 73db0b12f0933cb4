"""Where webhooks may be sent: http(s) URLs whose every address is public.

Private, loopback, link-local and multicast addresses are allowed only when the settings
say so (development and tests). Cloud metadata addresses are refused always: a webhook
must never be a way to read a host's credentials. The dispatcher resolves once, checks
the addresses, and connects to a checked address: a DNS answer that changes between the
check and the connection cannot redirect it.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from ledger.errors import InvalidRequest
from ledger.transaction_request import UNSTORABLE

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2048
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(address)
    for address in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack instance metadata
        "fd00:ec2::254",  # AWS instance metadata over IPv6
        "169.254.170.2",  # AWS ECS task credentials
        "100.100.100.200",  # Alibaba Cloud instance metadata
    )
)
# NAT64 embeds an IPv4 address in IPv6; the embedded one is what is reached.
NAT64 = ipaddress.ip_network("64:ff9b::/96")


class TargetRefused(InvalidRequest):
    """A webhook URL that Tally will not send to."""

    def __init__(self, message: str) -> None:
        super().__init__("webhook_url_refused", message, field="url")


@dataclass(frozen=True)
class Target:
    """A parsed webhook URL: where to connect and what to ask for."""

    scheme: str
    host: str
    port: int
    path: str


def parse_target(url: str) -> Target:
    """The target of an http(s) URL, or TargetRefused for anything else."""
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
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise TargetRefused("the URL's port is not a valid port number") from None
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(scheme, hostname, port, path)


def _effective(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    return address


def refusal(address: IPAddress, *, allow_private: bool) -> str | None:
    """Why an address may not receive webhooks, or None when it may."""
    address = _effective(address)
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if allow_private:
        return None
    if address.is_multicast or address.is_unspecified or not address.is_global:
        return "a loopback, private, link-local, multicast or reserved address"
    return None


def resolve_target(target: Target, *, allow_private: bool) -> list[str]:
    """Every address the host resolves to, all checked; TargetRefused if any is refused."""
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise TargetRefused(f"the host {target.host!r} does not resolve") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise TargetRefused(f"the host {target.host!r} does not resolve")
    for raw in addresses:
        # A scope id (fe80::1%eth0) belongs to a link-local address: checked without it.
        reason = refusal(ipaddress.ip_address(raw.split("%", 1)[0]), allow_private=allow_private)
        if reason is None:
            continue
        if raw == target.host:
            raise TargetRefused(f"{target.host} is {reason}")
        raise TargetRefused(f"{target.host} resolves to {raw}, {reason}")
    return addresses


def check_url(url: str, *, allow_private: bool) -> Target:
    """Registration-time check of a webhook URL: its form and every address it resolves to."""
    target = parse_target(url)
    resolve_target(target, allow_private=allow_private)
    return target
