"""PortPool: even ports, contiguous runs, quarantine before reuse, 503 before any state on exhaustion."""

from __future__ import annotations

import pytest

from siprec.sip.errors import SipError
from siprec.srs.ports import PortPool


def test_contiguous_even_ports_in_order() -> None:
    pool = PortPool(20000, 20099, quarantine_s=10)
    assert pool.allocate(3, now=0) == [20000, 20002, 20004]
    assert pool.allocate(2, now=0) == [20006, 20008]
    assert pool.in_use == 5


def test_odd_port_min_rounds_up_and_rtcp_fits() -> None:
    pool = PortPool(20001, 20010)
    assert pool.slots == 4  # 20002..20008, each with its +1 inside the range (20010 has no 20011)
    assert pool.allocate(4, now=0) == [20002, 20004, 20006, 20008]


def test_quarantine_delays_reuse() -> None:
    now = 100.0
    pool = PortPool(20000, 20007, quarantine_s=30, clock=lambda: now)  # 4 slots
    ports = pool.allocate(4, now=0)
    pool.release(ports[:2], now=100)
    assert pool.quarantined == 2 and pool.available == 0 and pool.in_use == 2
    with pytest.raises(SipError) as err:
        pool.allocate(1, now=129.9)
    assert err.value.status == 503
    assert pool.allocate(2, now=130) == [20000, 20002]
    assert pool.quarantined == 0


def test_exhaustion_is_503_with_retry_after_and_takes_nothing() -> None:
    pool = PortPool(20000, 20007)
    pool.allocate(3, now=0)
    with pytest.raises(SipError) as err:
        pool.allocate(2, now=0)
    assert (err.value.status, err.value.warning) == (503, "no free RTP ports")
    assert err.value.headers == [("Retry-After", "5")]
    assert pool.available == 1  # nothing half-taken
    assert pool.allocate(1, now=0) == [20006]


def test_falls_back_to_scattered_ports_when_no_run_is_free() -> None:
    pool = PortPool(20000, 20011, quarantine_s=0)  # 6 slots
    ports = pool.allocate(6, now=0)
    pool.release([ports[0], ports[2], ports[4]], now=1)
    assert sorted(pool.allocate(3, now=1)) == [20000, 20004, 20008]


def test_rotation_spreads_reuse_and_double_release_is_harmless() -> None:
    pool = PortPool(20000, 20011, quarantine_s=0)
    first = pool.allocate(1, now=0)
    pool.release(first, now=0)
    pool.release(first, now=0)  # BYE racing a time-out
    pool.release([20001, 19998, 30000], now=0)  # odd / outside: ignored
    assert pool.available == 6
    assert pool.allocate(1, now=0) == [20002]  # the cursor moved on: not the port just freed


def test_bad_ranges() -> None:
    with pytest.raises(ValueError):
        PortPool(20000, 20000)
    with pytest.raises(ValueError):
        PortPool(20000, 20010, quarantine_s=-1)
