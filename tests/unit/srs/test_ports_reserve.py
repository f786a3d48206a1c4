"""PortPool reserve/unreserve hooks: the media layer binds a port's sockets when it is handed out (reserve) and
frees them when it comes back (unreserve); a port another process holds is skipped, never handed out."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siprec.sip.errors import SipError
from siprec.srs.ports import PortPool


class Sockets:
    """A fake media layer: which ports it holds, refusing the ones another process has bound."""

    def __init__(self, refused: set[int] | None = None) -> None:
        self.refused = refused if refused is not None else set()
        self.held: set[int] = set()
        self.reserved: list[int] = []
        self.unreserved: list[int] = []

    def reserve(self, port: int) -> bool:
        if port in self.refused:
            return False
        assert port not in self.held, f"port {port} handed out twice"
        self.held.add(port)
        self.reserved.append(port)
        return True

    def unreserve(self, port: int) -> None:
        assert port in self.held, f"unreserve of port {port} that was not reserved"
        self.held.discard(port)
        self.unreserved.append(port)


def _pool(sockets: Sockets, port_max: int = 20007, quarantine_s: float = 30) -> PortPool:
    """Four slots (20000..20006) by default."""
    return PortPool(
        20000,
        port_max,
        quarantine_s=quarantine_s,
        clock=lambda: 0.0,
        reserve=sockets.reserve,
        unreserve=sockets.unreserve,
    )


def test_a_port_that_cannot_be_reserved_is_skipped_and_the_call_still_gets_its_ports() -> None:
    sockets = Sockets({20002})
    pool = _pool(sockets)
    ports = pool.allocate(3, now=0)
    assert ports == [20000, 20004, 20006]
    assert sockets.held == set(ports)
    assert pool.quarantined == 1 and pool.available == 0


def test_a_refused_port_is_retried_only_after_the_quarantine() -> None:
    sockets = Sockets({20002})
    pool = _pool(sockets)
    pool.allocate(3, now=0)
    sockets.refused.clear()  # the other process let go of it
    with pytest.raises(SipError):
        pool.allocate(1, now=29.9)
    assert pool.allocate(1, now=30) == [20002]
    assert sockets.held == {20000, 20002, 20004, 20006}


def test_exhaustion_is_still_503_and_gives_back_what_it_reserved() -> None:
    sockets = Sockets({20002, 20006})
    pool = _pool(sockets)
    with pytest.raises(SipError) as err:
        pool.allocate(3, now=0)
    assert err.value.status == 503 and ("Retry-After", "5") in err.value.headers
    assert sorted(sockets.unreserved) == [20000, 20004] and not sockets.held
    # The two good ports are free at once (they never reached an SDP answer); the refused ones wait.
    assert (pool.available, pool.quarantined) == (2, 2)
    assert sorted(pool.allocate(2, now=0)) == [20000, 20004]


def test_when_every_port_is_refused_the_call_gets_503_and_nothing_is_held() -> None:
    sockets = Sockets({20000, 20002, 20004, 20006})
    pool = _pool(sockets)
    with pytest.raises(SipError) as err:
        pool.allocate(1, now=0)
    assert err.value.status == 503
    assert not sockets.held and not sockets.unreserved


def test_release_unreserves_each_port_once() -> None:
    sockets = Sockets()
    pool = _pool(sockets)
    ports = pool.allocate(2, now=0)
    pool.release(ports, now=1)
    pool.release(ports, now=2)  # BYE racing a time-out
    pool.release([20004, 20001, 30000], now=2)  # never handed out, odd, outside the range
    assert sorted(sockets.unreserved) == ports
    assert not sockets.held


def test_release_with_no_quarantine_unreserves_once_and_the_port_is_reusable() -> None:
    sockets = Sockets()
    pool = _pool(sockets, quarantine_s=0)
    ports = pool.allocate(4, now=0)
    pool.release(ports[:1], now=0)
    pool.release(ports[:1], now=0)
    assert sockets.unreserved == ports[:1]
    assert pool.allocate(1, now=0) == ports[:1]
    assert sockets.reserved.count(ports[0]) == 2


def test_releasing_a_refused_port_does_not_unreserve_it() -> None:
    sockets = Sockets({20002})
    pool = _pool(sockets)
    pool.allocate(1, now=0)
    pool.allocate(1, now=0)  # tries 20002 (refused), then gets 20004
    pool.release([20002], now=1)
    assert sockets.unreserved == []
    assert sockets.held == {20000, 20004}


_ops = st.lists(
    st.one_of(
        st.tuples(st.just("allocate"), st.integers(1, 5), st.frozensets(st.integers(0, 7))),
        st.tuples(st.just("release"), st.integers(0, 2**16), st.just(frozenset())),
        st.tuples(st.just("wait"), st.integers(1, 20), st.just(frozenset())),
    ),
    max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(_ops)
def test_reservations_always_match_the_ports_handed_out(ops: list[tuple[str, int, frozenset[int]]]) -> None:
    sockets = Sockets()
    now = 0.0
    pool = PortPool(
        20000, 20015, quarantine_s=10, clock=lambda: now, reserve=sockets.reserve, unreserve=sockets.unreserve
    )
    calls: list[list[int]] = []  # the ports each live call holds
    for op, n, refused in ops:
        if op == "allocate":
            sockets.refused = {20000 + 2 * slot for slot in refused}
            try:
                ports = pool.allocate(n, now=now)
            except SipError as err:
                assert err.status == 503
            else:
                assert len(ports) == n and len(set(ports)) == n
                assert not set(ports) & sockets.refused
                calls.append(ports)
        elif op == "release" and calls:
            pool.release(calls.pop(n % len(calls)), now=now)
        else:
            now += n
        owned = {p for call in calls for p in call}
        assert sockets.held == owned  # nothing leaked, nothing handed out unreserved
        assert pool.in_use == len(owned)
