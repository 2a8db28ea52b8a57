"""The client edge on plain data: error translation and the per-request retry policy.

Errors are the client's own exception types built by hand (no server); the retry policy is fed
callables that raise translated errors, with the sleep recorded instead of slept.
"""

from __future__ import annotations

import email.utils

import pytest
import urllib3
from kubernetes.client.rest import ApiException

from harden.errors import ClusterError, Conflict, Forbidden, NotFound, TimedOut, Unreachable, Untrusted
from harden.kube import RetryPolicy, Timeouts, call, carries, parse_retry_after, translated

POLICY = RetryPolicy(attempts=4, base=0.1, cap=1.0, budget=30.0, retry_after_cap=5.0)


def api_error(status: int, body: str = "", headers: dict | None = None, reason: str = "") -> ApiException:
    exc = ApiException(status=status, reason=reason or "reason")
    exc.body = body
    exc.headers = headers
    return exc


def translate(exc: BaseException) -> ClusterError:
    with pytest.raises(ClusterError) as info, translated("list Role"):
        raise exc
    assert info.value.__cause__ is exc  # the cause is chained, not lost
    return info.value


class Script:
    """A request that fails with the given errors in turn, then answers `result`."""

    def __init__(self, *errors: BaseException, result: object = "ok") -> None:
        self.errors = list(errors)
        self.result = result
        self.calls = 0

    def __call__(self) -> object:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.result


def run(fn, settle=None, policy: RetryPolicy = POLICY):
    waits: list[float] = []
    return call(fn, policy, settle=settle, sleep=waits.append), waits


# -- translation ----------------------------------------------------------------------------------

def test_429_is_retryable_and_carries_retry_after():
    err = translate(api_error(429, '{"message": "too many requests"}', {"Retry-After": "3"}))
    assert err.retryable and err.retry_after == 3.0 and not err.outcome_unknown
    assert "throttling" in err.diagnostic.summary


@pytest.mark.parametrize("status, unknown", [(500, True), (502, True), (504, True), (503, False)])
def test_5xx_retryable_and_whether_the_request_may_have_been_carried_out(status, unknown):
    err = translate(api_error(status, '{"message": "boom"}'))
    assert err.retryable and err.outcome_unknown is unknown


@pytest.mark.parametrize("status, cls", [(404, NotFound), (403, Forbidden), (401, Forbidden), (409, Conflict)])
def test_client_errors_are_typed_and_not_retried(status, cls):
    err = translate(api_error(status, '{"message": "no"}'))
    assert type(err) is cls and not err.retryable


def test_wrong_ca_is_a_trust_problem_not_an_outage():
    reason = ("SSLError\nHTTPSConnectionPool(host='127.0.0.1', port=6443): Max retries exceeded with url: /version "
              "(Caused by SSLError(SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify "
              "failed: unable to get local issuer certificate (_ssl.c:1010)')))")
    err = translate(ApiException(status=0, reason=reason))
    assert isinstance(err, Untrusted) and not err.retryable
    assert "certificate verify failed: unable to get local issuer certificate" in err.diagnostic.summary
    assert "certificate-authority" in err.diagnostic.hint and "--insecure" in err.diagnostic.hint
    assert "cluster is up" not in err.render()


def test_https_url_against_a_plain_http_port():
    err = translate(ApiException(status=0, reason="SSLError\n[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1010)"))
    assert "did not answer in TLS" in err.diagnostic.summary and "plain HTTP" in err.diagnostic.hint


def test_http_url_against_the_https_port():
    err = translate(api_error(400, "Client sent an HTTP request to an HTTPS server.\n"))
    assert "speaks HTTPS" in err.diagnostic.summary and "https://" in err.diagnostic.hint and not err.retryable


def test_read_timeout_is_not_retried_and_its_outcome_is_unknown():
    err = translate(urllib3.exceptions.ReadTimeoutError(None, "/apis", "Read timed out. (read timeout=60)"))
    assert isinstance(err, TimedOut) and not err.retryable and err.outcome_unknown
    assert "--request-timeout" in err.diagnostic.hint


def test_refused_connection_was_never_sent():
    err = translate(urllib3.exceptions.NewConnectionError(None, "Failed to establish a new connection: refused"))
    assert isinstance(err, Unreachable) and err.retryable and not err.outcome_unknown


def test_reset_connection_may_have_been_carried_out():
    err = translate(urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(104, "reset")))
    assert isinstance(err, Unreachable) and err.retryable and err.outcome_unknown
    assert "lost the connection" in err.diagnostic.summary


def test_retry_after_forms():
    assert parse_retry_after("7") == 7.0
    now = 1_700_000_000.0
    assert parse_retry_after(email.utils.formatdate(now + 12, usegmt=True), now=now) == pytest.approx(12.0)
    assert parse_retry_after(email.utils.formatdate(now - 50, usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_timeouts_from_the_flag():
    assert Timeouts.of(30) == Timeouts(connect=10.0, read=30.0)
    assert Timeouts.of(2) == Timeouts(connect=2.0, read=2.0)


# -- the retry policy -----------------------------------------------------------------------------

def throttled(after: float | None = None) -> ClusterError:
    return ClusterError("throttled", status=429, retryable=True, retry_after=after)


def lost() -> Unreachable:
    return Unreachable("lost", retryable=True, outcome_unknown=True)


def test_retries_a_retryable_request_until_it_answers():
    fn = Script(throttled(), ClusterError("503", status=503, retryable=True), lost())
    result, waits = run(fn)
    assert result == "ok" and fn.calls == 4 and len(waits) == 3
    assert all(0 <= w <= POLICY.cap for w in waits)


def test_honours_retry_after_with_a_little_jitter_and_a_cap():
    fn = Script(throttled(2.0), throttled(600.0))
    _, waits = run(fn)
    assert 2.0 <= waits[0] <= 2.0 + POLICY.base
    assert POLICY.retry_after_cap <= waits[1] <= POLICY.retry_after_cap + POLICY.base


def test_gives_up_after_the_attempts_with_the_last_error():
    errors = [throttled() for _ in range(POLICY.attempts + 2)]
    fn = Script(*errors)
    with pytest.raises(ClusterError) as info:
        run(fn)
    assert fn.calls == POLICY.attempts and info.value is errors[POLICY.attempts - 1]


def test_gives_up_when_the_time_budget_is_spent():
    fn = Script(*[throttled(10.0) for _ in range(10)])
    with pytest.raises(ClusterError):
        # The budget is checked on real time since the first try: none is left for a second.
        call(fn, RetryPolicy(attempts=10, budget=0.0), sleep=lambda _: None)
    assert fn.calls == 1


@pytest.mark.parametrize("error", [Forbidden("no", status=403), NotFound("gone", status=404),
                                   TimedOut("slow", outcome_unknown=True), ClusterError("bad", status=422)])
def test_does_not_retry_what_cannot_succeed_or_took_the_whole_timeout(error):
    fn = Script(error)
    with pytest.raises(type(error)):
        run(fn)
    assert fn.calls == 1


def test_lost_answer_to_a_write_that_landed_is_settled_by_reading_back():
    fn = Script(lost(), result="sent again")
    reads: list[str] = []

    def settle():
        reads.append("read")
        return {"already": "there"}

    result, _ = run(fn, settle=settle)
    assert result == {"already": "there"} and fn.calls == 1 and reads == ["read"]


def test_lost_answer_to_a_write_that_did_not_land_is_sent_again():
    fn = Script(lost(), result="sent again")
    result, _ = run(fn, settle=lambda: None)
    assert result == "sent again" and fn.calls == 2


def test_conflict_after_a_lost_answer_is_settled_too():
    # Read back before the landing, resent, refused: our own first try moved the object on.
    answers = iter([None, {"landed": True}])
    fn = Script(lost(), Conflict("conflict", status=409))
    result, _ = run(fn, settle=lambda: next(answers))
    assert result == {"landed": True} and fn.calls == 2


def test_conflict_without_a_lost_answer_is_a_real_conflict():
    fn = Script(Conflict("conflict", status=409))
    with pytest.raises(Conflict):
        run(fn, settle=lambda: {"would": "mask it"})


def test_settle_is_not_consulted_when_the_request_was_not_carried_out():
    fn = Script(throttled(), result="second try")
    result, _ = run(fn, settle=lambda: pytest.fail("a 429 was not carried out; nothing to read back"))
    assert result == "second try"


# -- has a write landed? --------------------------------------------------------------------------

LIVE = {"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cm", "namespace": "argo", "resourceVersion": "9", "uid": "u"},
        "data": {"a": "1", "b": "2"}}


def test_carries_compares_the_written_fields_only():
    assert carries(LIVE, {"apiVersion": "v1", "kind": "ConfigMap",
                          "metadata": {"name": "cm", "namespace": "argo", "resourceVersion": "3"}, "data": {"a": "1"}})
    assert not carries(LIVE, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "argo"},
                              "data": {"a": "2"}})


def test_carries_treats_a_null_as_a_deletion():
    gone = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "argo"}, "data": {"c": None}}
    still = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "argo"}, "data": {"b": None}}
    assert carries(LIVE, gone) and not carries(LIVE, still)


def test_connect_timeout_is_not_retried_and_nothing_was_sent():
    err = translate(urllib3.exceptions.ConnectTimeoutError(None, "Connection to 10.0.0.1 timed out. (connect timeout=10)"))
    assert isinstance(err, TimedOut) and not err.retryable and not err.outcome_unknown
