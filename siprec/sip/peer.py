"""Where SIP messages come from and go to: the `Peer` address, response routing (RFC 3261 section 18.2.2 with
RFC 3581 rport) and the next hop of a request URI (RFC 3261 section 8.1.2, without DNS: numeric or plain host).

`siprec.sip.transaction` re-exports everything public here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from siprec.sip.errors import SipParseError
from siprec.sip.headers import Via, parse_params, parse_via, split_comma
from siprec.sip.message import Headers, SipRequest

RELIABLE_TRANSPORTS = frozenset({"TCP", "TLS", "SCTP", "TLS-SCTP", "WS", "WSS"})
SECURE_TRANSPORTS = frozenset({"TLS", "WSS", "TLS-SCTP"})


@dataclass(frozen=True)
class Peer:
    """A remote address as the transport layer sees it.

    `connection` is the transport's own handle (a TCP/TLS stream) so a response goes back on the connection the
    request came on; it does not take part in equality, only the address does.
    """

    transport: str  # "UDP", "TCP", "TLS" ... (upper case)
    host: str  # IP address or host name, IPv6 without brackets
    port: int
    connection: object | None = field(default=None, compare=False, repr=False)

    @property
    def reliable(self) -> bool:
        return self.transport.upper() in RELIABLE_TRANSPORTS

    @property
    def secure(self) -> bool:
        return self.transport.upper() in SECURE_TRANSPORTS


def default_port(transport: str) -> int:
    return 5061 if transport.upper() in SECURE_TRANSPORTS else 5060


def _bare_host(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def response_destination(req: SipRequest, source: Peer) -> Peer:
    """Where the responses to `req` go (RFC 3261 section 18.2.2, RFC 3581 section 4).

    Reliable transports answer on the connection the request came on (`source` itself, same object). On UDP:
    `maddr` if present, else the source IP (the `received` address) with the source port when `rport` was asked
    for, else the sent-by port (default 5060).
    """
    if source.reliable:
        return source
    via = req.top_via
    port = via.port if via.port is not None else default_port(via.transport)
    maddr = via.params.get("maddr")
    if maddr:
        return Peer(source.transport, _bare_host(maddr), port)
    if "rport" in via.params:
        return Peer(source.transport, source.host, source.port, source.connection)
    return Peer(source.transport, source.host, port, source.connection)


def stamp_received(req: SipRequest, source: Peer) -> bool:
    """Add `received=` to the top Via when its sent-by host is not the source IP (RFC 3261 section 18.2.1), and
    fill an empty `rport` with the source port (RFC 3581, which then also wants `received` even when equal).
    Returns True when the message was changed. The Via is re-serialised; the other Via values stay as written.
    """
    fields = list(req.headers)
    for i, (name, value) in enumerate(fields):
        if name != "Via":
            continue
        parts = split_comma(value)
        if not parts:
            return False
        via = parse_via(parts[0])
        if not _update_via(via, source):
            return False
        parts[0] = str(via)
        fields[i] = (name, ", ".join(parts))
        req.headers = Headers.from_canonical(fields)
        return True
    return False


def _update_via(via: Via, source: Peer) -> bool:
    changed = False
    rport_asked = "rport" in via.params and not via.params["rport"]
    if rport_asked:
        via.params["rport"] = str(source.port)
        changed = True
    if (rport_asked or _bare_host(via.host).lower() != source.host.lower()) and via.params.get(
        "received"
    ) != source.host:
        via.params["received"] = source.host
        changed = True
    return changed


@dataclass(frozen=True)
class HopUri:
    """The parts of a sip:/sips: URI that next-hop routing needs (the full URI model is `siprec.sip.uri`)."""

    scheme: str  # "sip" or "sips"
    host: str  # without IPv6 brackets
    port: int | None
    params: dict[str, str | None]

    @property
    def loose_route(self) -> bool:
        return "lr" in self.params


def parse_hop_uri(uri: str) -> HopUri:
    """`sip:user@host:port;params?headers` (angle brackets tolerated). Raises SipParseError otherwise."""
    text = uri.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    scheme, sep, rest = text.partition(":")
    scheme = scheme.lower()
    if not sep or scheme not in ("sip", "sips"):
        raise SipParseError(f"not a SIP URI: {uri!r}")
    rest = rest.split("?", 1)[0]
    # The user part may hold ';' and ':' itself; the host starts after the last '@'.
    at = rest.rfind("@")
    hostpart = rest[at + 1 :] if at >= 0 else rest
    hostport, _, param_text = hostpart.partition(";")
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise SipParseError(f"bad IPv6 reference in {uri!r}")
        host, port_text = hostport[1:end], hostport[end + 1 :].lstrip(":")
    else:
        host, _, port_text = hostport.partition(":")
    if not host:
        raise SipParseError(f"SIP URI without host: {uri!r}")
    port: int | None = None
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise SipParseError(f"bad port in {uri!r}")
        port = int(port_text)
    return HopUri(scheme, host, port, parse_params(param_text) if param_text else {})


def uri_destination(uri: str) -> Peer:
    """Next hop for a request sent to `uri` (RFC 3263 without DNS: the host is used as it is).

    `maddr` overrides the host; `transport=` picks the transport; sips: means TLS; ports default to 5060/5061.
    """
    u = parse_hop_uri(uri)
    transport = (u.params.get("transport") or "").upper()
    if not transport:
        transport = "TLS" if u.scheme == "sips" else "UDP"
    elif u.scheme == "sips" and transport == "TCP":
        transport = "TLS"  # sips over "tcp" means TLS over TCP (RFC 3261 section 26.2.2)
    host = _bare_host(u.params.get("maddr") or u.host)
    return Peer(transport, host, u.port if u.port is not None else default_port(transport))
