from __future__ import annotations

import pytest

from siprec.sip.admission import AdmissionControl, SourceLimits
from siprec.sip.errors import SipError


def retry_after(err: SipError) -> int:
    return int(dict(err.headers)["Retry-After"])


def test_empty_allow_list_trusts_everyone() -> None:
    ac = AdmissionControl()
    ac.check_source("203.0.113.9")
    assert ac.is_trusted("::1")


def test_allow_list_by_cidr_and_single_address() -> None:
    ac = AdmissionControl(["10.1.0.0/16", "192.0.2.7", "2001:db8::/32"])
    assert ac.is_trusted("10.1.200.3")
    assert ac.is_trusted("192.0.2.7")
    assert ac.is_trusted("[2001:db8::5]")
    assert ac.is_trusted("::ffff:10.1.0.1")  # IPv4-mapped on a dual-stack socket
    assert not ac.is_trusted("192.0.2.8")
    assert not ac.is_trusted("not-an-ip")
    with pytest.raises(SipError) as exc:
        ac.check_source("198.51.100.1")
    assert exc.value.status == 403
    assert "198.51.100.1" in exc.value.warning


def test_max_sessions_gives_503_until_a_session_ends() -> None:
    ac = AdmissionControl(max_sessions=2)
    ac.admit("a", 0)
    ac.admit("b", 0)
    with pytest.raises(SipError) as exc:
        ac.admit("c", 0)
    assert exc.value.status == 503
    assert retry_after(exc.value) > 0
    assert "max_sessions" in exc.value.warning
    ac.release("a")
    ac.admit("c", 1)
    assert ac.active_total == 2


def test_concurrent_per_source_is_per_address() -> None:
    ac = AdmissionControl(per_source=SourceLimits(concurrent=1))
    ac.admit("10.0.0.1", 0)
    ac.admit("10.0.0.2", 0)
    with pytest.raises(SipError) as exc:
        ac.admit("10.0.0.1", 0)
    assert "concurrent" in exc.value.warning
    ac.release("10.0.0.1")
    ac.admit("10.0.0.1", 0)


def test_hourly_window_slides_and_retry_after_says_when() -> None:
    ac = AdmissionControl(per_source=SourceLimits(hourly=2))
    ac.admit("h", 0)
    ac.release("h")
    ac.admit("h", 600)
    ac.release("h")
    with pytest.raises(SipError) as exc:
        ac.admit("h", 1000)
    assert exc.value.status == 503
    assert retry_after(exc.value) == 2600  # the dialog of t=0 leaves the window at t=3600
    ac.admit("h", 3600)  # now it has
    with pytest.raises(SipError):
        ac.admit("h", 3601)


def test_daily_limit() -> None:
    ac = AdmissionControl(per_source=SourceLimits(daily=1))
    ac.admit("d", 0)
    ac.release("d")
    with pytest.raises(SipError) as exc:
        ac.admit("d", 3 * 3600)
    assert "daily" in exc.value.warning
    assert retry_after(exc.value) == 86400 - 3 * 3600
    ac.admit("d", 86400)


def test_rejected_dialog_is_not_counted_and_state_is_freed() -> None:
    ac = AdmissionControl(per_source=SourceLimits(concurrent=1))
    ac.admit("x", 0)
    with pytest.raises(SipError):
        ac.admit("x", 0)
    assert ac.active_for("x") == 1
    ac.release("x")
    ac.release("x")  # a double release never goes negative
    assert ac.active_for("x") == 0
    assert ac.active_total == 0
    assert not ac._sources
