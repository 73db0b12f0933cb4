import ipaddress
import uuid

import pytest

from ledger.db import unit_of_work
from ledger.webhooks.endpoints import create_endpoint, get_endpoint
from ledger.webhooks.targets import TargetRefused, check_url, parse_target, refusal
from tests.conftest import secret_box


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://localhost:8080/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://172.16.5.4/hook",
        "http://[::1]/hook",
        "http://[fe80::1]/hook",
        "http://169.254.1.1/hook",
        "http://224.0.0.1/hook",
        "http://0.0.0.0/hook",
        "http://100.64.0.1/hook",
        "http://[::ffff:10.0.0.1]/hook",
        "http://[fd12:3456::1]/hook",
    ],
)
def test_private_addresses_are_refused_unless_allowed(url):
    with pytest.raises(TargetRefused):
        check_url(url, allow_private=False)
    check_url(url, allow_private=True)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest",
        "http://[::ffff:169.254.169.254]/",
        "http://[64:ff9b::a9fe:a9fe]/",
    ],
)
def test_cloud_metadata_addresses_are_refused_even_when_private_targets_are_allowed(url):
    with pytest.raises(TargetRefused, match="metadata"):
        check_url(url, allow_private=True)


def test_public_addresses_are_accepted():
    target = check_url("https://93.184.215.14:8443/hooks/tally?x=1", allow_private=False)
    assert (target.scheme, target.host, target.port, target.path) == (
        "https",
        "93.184.215.14",
        8443,
        "/hooks/tally?x=1",
    )


@pytest.mark.parametrize(
    "url",
    [
        "ftp://93.184.215.14/",
        "file:///etc/passwd",
        "gopher://93.184.215.14/",
        "http:///no-host",
        "https://user:pass@93.184.215.14/",
        "http://93.184.215.14:99999/",
        "http://93.184.215.14/a b",
        "http://93.184.215.14/\r\nX-Injected: 1",
        "https://" + "a" * 2050 + ".com/",
    ],
)
def test_urls_that_are_not_plain_http_or_https_are_refused(url):
    with pytest.raises(TargetRefused):
        parse_target(url)
        check_url(url, allow_private=True)


def test_a_host_that_does_not_resolve_is_refused():
    with pytest.raises(TargetRefused, match="does not resolve"):
        check_url("https://no-such-host.invalid/hook", allow_private=True)


def test_ipv4_mapped_addresses_are_judged_by_the_address_they_map_to():
    assert refusal(ipaddress.ip_address("::ffff:8.8.8.8"), allow_private=False) is None
    assert refusal(ipaddress.ip_address("::ffff:127.0.0.1"), allow_private=False) is not None


def test_refusing_a_host_name_does_not_reveal_what_it_resolves_to(engine, tenant):
    with unit_of_work(engine) as work, pytest.raises(TargetRefused) as refused:
        create_endpoint(
            work, tenant.id, box=secret_box(), url="http://localhost:8080/hook", allow_private=False
        )

    assert refused.value.message == (
        "the host 'localhost' resolves to an address that is not publicly routable"
    )
    for address in ("127.0.0.1", "::1"):
        assert address not in refused.value.message


def test_a_url_is_stored_and_shown_in_its_normalized_ascii_form(engine, tenant):
    with unit_of_work(engine) as work:
        created = create_endpoint(
            work,
            tenant.id,
            box=secret_box(),
            url="HTTP://127.0.0.1:9/hoöks/ü?q=é",
            allow_private=True,
        )
        shown = get_endpoint(work.connection, tenant.id, uuid.UUID(created["id"]))

    assert created["url"] == shown["url"] == "http://127.0.0.1:9/ho%C3%B6ks/%C3%BC?q=%C3%A9"


def test_a_url_that_cannot_be_normalized_is_refused_at_registration(engine, tenant):
    with unit_of_work(engine) as work, pytest.raises(TargetRefused) as refused:
        create_endpoint(
            work, tenant.id, box=secret_box(), url="http://a..ü.example/hook", allow_private=True
        )
    assert refused.value.code == "webhook_url_refused"
