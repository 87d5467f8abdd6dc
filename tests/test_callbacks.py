"""Callback signing (Standard Webhooks), target checks (SSRF) and one delivery attempt."""

from __future__ import annotations

import ipaddress
import socket
import ssl

import httpx
import pytest

from app.callbacks import (
    UnresolvableCallbackHost,
    UnsafeCallbackTarget,
    check_target,
    deliver,
    payload,
    shown_url,
    sign,
)
from tests.support import webhooks
from tests.support.receiver import TEST_CERTIFICATE, CallbackReceiver
from tests.support.ssrf import NON_PUBLIC_ADDRESSES, OTHER_SPELLINGS

PUBLIC = ipaddress.ip_address("93.184.216.34")
LOOPBACK = ipaddress.ip_address("127.0.0.1")


def resolving_to(*answers: list[str]):
    """A resolver answering each call with the next list of addresses (the last one repeats),
    and recording the names it was asked for."""
    asked: list[str] = []

    def resolve(host: str, port: int) -> list:
        asked.append(host)
        return [ipaddress.ip_address(a) for a in answers[min(len(asked), len(answers)) - 1]]

    resolve.asked = asked
    return resolve


def unresolvable(host: str, port: int) -> list:
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


# The specification's published test vector: standard-webhooks/standard-webhooks,
# libraries/python/tests/test_webhooks.py, test_sign_function (the same in its other libraries).
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_given_the_standard_webhooks_reference_example_when_signed_then_the_signature_matches():
    signature = sign(VECTOR_SECRET, webhook_id=VECTOR_ID, timestamp=VECTOR_TIMESTAMP, body=VECTOR_BODY)
    assert signature == VECTOR_SIGNATURE


def test_given_the_standard_webhooks_test_vector_when_the_test_verifier_checks_it_then_only_the_exact_delivery_passes():
    headers = {"webhook-id": VECTOR_ID, "webhook-timestamp": str(VECTOR_TIMESTAMP),
               "webhook-signature": VECTOR_SIGNATURE}
    assert webhooks.verify(VECTOR_SECRET, headers=headers, body=VECTOR_BODY, now_s=VECTOR_TIMESTAMP + 10)
    # among other signatures (a secret being rotated), as the specification allows
    rotating = headers | {"webhook-signature": "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= " + VECTOR_SIGNATURE}
    assert webhooks.verify(VECTOR_SECRET, headers=rotating, body=VECTOR_BODY, now_s=VECTOR_TIMESTAMP)
    assert not webhooks.verify(VECTOR_SECRET, headers=headers, body=b'{"test": 2432232315}', now_s=VECTOR_TIMESTAMP)
    assert not webhooks.verify(VECTOR_SECRET, headers=headers | {"webhook-id": "msg_other"}, body=VECTOR_BODY,
                               now_s=VECTOR_TIMESTAMP)
    assert not webhooks.verify("whsec_c2VjcmV0", headers=headers, body=VECTOR_BODY, now_s=VECTOR_TIMESTAMP)
    assert not webhooks.verify(VECTOR_SECRET, headers=headers, body=VECTOR_BODY, now_s=VECTOR_TIMESTAMP + 3600)


@pytest.mark.parametrize("host", [*NON_PUBLIC_ADDRESSES, *OTHER_SPELLINGS])
def test_given_a_non_public_target_when_private_targets_are_refused_then_it_is_unsafe(host):
    with pytest.raises(UnsafeCallbackTarget, match=r"non-public|metadata"):
        check_target(f"http://{host}:8080/x", allow_private=False)


@pytest.mark.parametrize("address", NON_PUBLIC_ADDRESSES)
def test_given_a_name_resolving_to_a_non_public_address_when_checked_then_it_is_unsafe(address):
    with pytest.raises(UnsafeCallbackTarget, match=r"non-public|metadata"):
        check_target("https://hook.example/x", allow_private=False, resolve=resolving_to([address.strip("[]")]))


@pytest.mark.parametrize("address", NON_PUBLIC_ADDRESSES)
def test_given_a_name_that_resolves_to_a_non_public_address_at_delivery_when_delivered_then_nothing_is_sent(
        address):
    seen: list[httpx.Request] = []
    with httpx.Client(transport=httpx.MockTransport(lambda request: seen.append(request) or httpx.Response(204))
                      ) as client:
        result = deliver("https://hook.example/x", payload(_batch()), webhook_id="m", secret="s", client=client,
                         allow_private=False, resolve=resolving_to([address.strip("[]")]))
    assert seen == [] and not result.delivered and result.status_code is None
    assert result.error.startswith("callback_url host 'hook.example' ")
    assert "non-public address" in result.error or "metadata address" in result.error


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest", "http://[::ffff:169.254.169.254]/latest",
                                 "http://[64:ff9b::a9fe:a9fe]/latest", "http://[fd00:ec2::254]/latest"])
def test_given_a_metadata_address_when_private_targets_are_allowed_then_it_is_still_refused(url):
    with pytest.raises(UnsafeCallbackTarget, match="metadata"):
        check_target(url, allow_private=True)


def test_given_a_name_with_one_public_and_one_loopback_address_when_checked_then_it_is_refused():
    with pytest.raises(UnsafeCallbackTarget, match="non-public"):
        check_target("https://hook.example/x", allow_private=False, resolve=resolving_to(["93.184.216.34", "::1"]))


def test_given_a_name_resolving_to_nothing_when_checked_then_it_is_unresolvable_not_refused_outright():
    with pytest.raises(UnresolvableCallbackHost, match=r"'hook\.example' does not resolve"):
        check_target("https://hook.example/x", allow_private=False, resolve=unresolvable)


def test_given_a_public_address_when_checked_then_it_passes():
    check_target("https://93.184.216.34/hook", allow_private=False)


def test_given_a_host_that_does_not_resolve_when_checked_then_it_is_unresolvable():
    with pytest.raises(UnresolvableCallbackHost, match="does not resolve"):
        check_target("https://no-such-host.invalid/hook", allow_private=False)


def _batch() -> dict:
    return {"id": "job-1", "status": "completed", "completed_at": "2026-01-01T00:00:00Z",
            "metadata": {"job_type": "batch_messages"}, "request_counts": {"total": 1}, "ttft_ns": 5}


def test_given_a_batch_when_the_payload_is_built_then_it_holds_exactly_the_spec_fields():
    assert payload(_batch()) == {"job_id": "job-1", "status": "completed", "completed_at": "2026-01-01T00:00:00Z",
                                 "metadata": {"job_type": "batch_messages"}, "request_counts": {"total": 1}}


def test_given_a_receiver_when_delivered_then_it_gets_the_signed_body_and_the_result_records_200():
    with CallbackReceiver() as receiver, httpx.Client() as client:
        result = deliver(receiver.url, payload(_batch()), webhook_id="msg_job-1", secret="whsec_c2VjcmV0",
                         client=client, allow_private=True)
        assert result.delivered and result.status_code == 200 and result.error is None
        call = receiver.received[0]
        expected = sign("whsec_c2VjcmV0", webhook_id="msg_job-1", timestamp=int(call.headers["webhook-timestamp"]),
                        body=call.body)
        assert call.headers["webhook-signature"] == expected and call.json()["job_id"] == "job-1"


def test_given_a_receiver_when_delivered_then_the_result_names_the_address_reached_and_how_long_it_took():
    with CallbackReceiver() as receiver, httpx.Client() as client:
        result = deliver(f"http://localhost:{receiver.port}/hooks/batch", payload(_batch()), webhook_id="m",
                         secret="s", client=client, allow_private=True,
                         resolve=lambda host, port: [ipaddress.ip_address("127.0.0.1")])
    assert result.delivered and result.address == "127.0.0.1"
    assert isinstance(result.duration_ms, int) and 0 <= result.duration_ms < 10_000


def test_given_nothing_listening_when_delivered_then_no_address_is_named_as_reached():
    with httpx.Client(timeout=2) as client:
        result = deliver("http://127.0.0.1:9/hook", payload(_batch()), webhook_id="m", secret="s", client=client,
                         allow_private=True)
    assert not result.delivered and result.address is None and result.duration_ms >= 0


@pytest.mark.parametrize(("url", "shown"), [
    ("https://user:p4ss@hook.example:8443/x?y=1", "https://hook.example:8443/x?y=1"),
    ("https://token@hook.example/x", "https://hook.example/x"),
    ("https://hook.example/x?y=1", "https://hook.example/x?y=1"),
])
def test_given_a_callback_url_with_credentials_when_shown_in_an_attempt_then_they_are_left_out(url, shown):
    assert shown_url(url) == shown


def test_given_a_redirecting_receiver_when_delivered_then_the_redirect_is_not_followed():
    with CallbackReceiver(statuses=(307,)) as receiver, httpx.Client() as client:
        result = deliver(receiver.url, payload(_batch()), webhook_id="m", secret="s", client=client,
                         allow_private=True)
        assert not result.delivered and result.status_code == 307 and "307" in result.error
        assert len(receiver.received) == 1


def test_given_nothing_listening_when_delivered_then_the_network_error_is_recorded():
    with httpx.Client(timeout=2) as client:
        result = deliver("http://127.0.0.1:9/hook", payload(_batch()), webhook_id="m", secret="s", client=client,
                         allow_private=True)
    assert not result.delivered and result.status_code is None and "ConnectError" in result.error


def test_given_dns_that_rebinds_to_loopback_after_the_check_when_delivered_then_the_checked_address_is_used():
    seen: list[httpx.Request] = []
    resolve = resolving_to(["93.184.216.34"], ["127.0.0.1"])
    check_target("https://hook.example:8443/x", allow_private=False, resolve=resolve)  # at create

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    with httpx.Client(transport=httpx.MockTransport(answer)) as client:
        result = deliver("https://hook.example:8443/x", payload(_batch()), webhook_id="m", secret="s", client=client,
                         allow_private=False, resolve=resolve)
    # The delivery resolved once more (the loopback answer) and refused it, without connecting.
    assert not result.delivered and "non-public" in result.error and seen == []

    resolve = resolving_to(["93.184.216.34"], ["127.0.0.1"])
    with httpx.Client(transport=httpx.MockTransport(answer)) as client:
        result = deliver("https://hook.example:8443/x", payload(_batch()), webhook_id="m", secret="s", client=client,
                         allow_private=False, resolve=resolve)
    assert result.delivered and resolve.asked == ["hook.example"]
    (request,) = seen
    assert request.url.host == "93.184.216.34" and request.url.port == 8443
    assert request.headers["host"] == "hook.example:8443" and request.extensions["sni_hostname"] == "hook.example"


def test_given_a_name_for_a_local_receiver_when_delivered_then_the_checked_address_gets_the_host_header():
    with CallbackReceiver() as receiver, httpx.Client(timeout=5) as client:
        url = f"http://callback.test:{receiver.port}/hooks/batch?x=1"
        result = deliver(url, payload(_batch()), webhook_id="m", secret="s", client=client, allow_private=True,
                         resolve=resolving_to(["127.0.0.2", "127.0.0.1"]))  # nothing listens on .2: next one
    assert result.delivered, result.error
    (call,) = receiver.received
    assert call.headers["host"] == f"callback.test:{receiver.port}" and call.path == "/hooks/batch?x=1"


@pytest.mark.parametrize(("name", "delivered"), [("callback.test", True), ("other.test", False)])
def test_given_https_to_a_pinned_address_when_delivered_then_the_certificate_is_verified_for_the_url_name(
        name, delivered):
    trust = ssl.create_default_context(cafile=str(TEST_CERTIFICATE))
    with CallbackReceiver(certfile=TEST_CERTIFICATE) as receiver, httpx.Client(verify=trust, timeout=5) as client:
        result = deliver(f"https://{name}:{receiver.port}/hook", payload(_batch()), webhook_id="m", secret="s",
                         client=client, allow_private=True, resolve=resolving_to(["127.0.0.1"]))
    assert receiver.server_names == [name]
    assert result.delivered is delivered
    if delivered:
        assert receiver.received[0].headers["host"] == f"{name}:{receiver.port}"
    else:
        assert "certificate" in result.error.lower() and receiver.received == []


def test_given_a_host_that_does_not_resolve_at_delivery_when_delivered_then_the_error_says_so():
    with httpx.Client(timeout=2) as client:
        result = deliver("https://hook.example/x", payload(_batch()), webhook_id="m", secret="s", client=client,
                         allow_private=False, resolve=unresolvable)
    assert result.error == "callback_url host 'hook.example' does not resolve" and result.status_code is None


def test_given_an_http_proxy_in_the_environment_when_delivered_then_the_proxy_gets_the_url_as_given(monkeypatch):
    with CallbackReceiver() as proxy:
        for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
        with httpx.Client(timeout=5) as client:
            result = deliver("http://hook.example:8080/x", payload(_batch()), webhook_id="m", secret="s",
                             client=client, allow_private=False, resolve=resolving_to(["93.184.216.34"]))
    assert result.delivered, result.error
    assert [call.path for call in proxy.received] == ["http://hook.example:8080/x"]
