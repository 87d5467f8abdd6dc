"""Callback signing (Standard Webhooks), target checks (SSRF) and one delivery attempt."""

from __future__ import annotations

import httpx
import pytest

from app.callbacks import UnsafeCallbackTarget, check_target, deliver, payload, sign
from tests.support.receiver import CallbackReceiver


def test_given_the_standard_webhooks_reference_example_when_signed_then_the_signature_matches():
    signature = sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", webhook_id="msg_p5jXN8AQM9LWM0D4loKWxJek",
                     timestamp=1614265330, body=b'{"test": 2432232314}')
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


@pytest.mark.parametrize("url", ["http://127.0.0.1/x", "http://10.0.0.8/x", "http://[::1]/x",
                                 "http://169.254.169.254/latest/meta-data", "http://192.168.1.1/x",
                                 "http://localhost:8080/x"])
def test_given_a_private_target_when_private_targets_are_refused_then_it_is_unsafe(url):
    with pytest.raises(UnsafeCallbackTarget):
        check_target(url, allow_private=False)


def test_given_the_metadata_address_when_private_targets_are_allowed_then_it_is_still_refused():
    with pytest.raises(UnsafeCallbackTarget, match="metadata"):
        check_target("http://169.254.169.254/latest", allow_private=True)


def test_given_a_public_address_when_checked_then_it_passes():
    check_target("https://93.184.216.34/hook", allow_private=False)


def test_given_a_host_that_does_not_resolve_when_checked_then_it_is_unsafe():
    with pytest.raises(UnsafeCallbackTarget, match="does not resolve"):
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
