"""UAS request checks of RFC 3261 section 8.2, in the order the RFC gives, as one pure function.

Each failed check raises `SipError` with the status, a Warning text naming the problem, and the headers the RFC
asks for (Allow on 405, Unsupported on 420, Accept on 415).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from siprec.sip.errors import SipError
from siprec.sip.message import SipRequest

MANDATORY_HEADERS = ("Via", "From", "To", "Call-ID", "CSeq")
# Methods standardised for SIP: one we know but do not allow gets 405, one we have never heard of gets 501
# (RFC 3261 section 21.4.6 / 21.5.2); both carry Allow.
KNOWN_METHODS = frozenset(
    {"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "SUBSCRIBE", "NOTIFY", "PUBLISH", "INFO",
     "REFER", "MESSAGE", "UPDATE"}
)
# Require is not applied to these (RFC 3261 section 8.2.2.3).
_NO_REQUIRE_CHECK = frozenset({"ACK", "CANCEL"})


@dataclass(frozen=True)
class UasPolicy:
    """What this UAS implements; OPTIONS advertises exactly this."""

    allowed_methods: tuple[str, ...] = ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "UPDATE")
    supported: tuple[str, ...] = ()
    accept: tuple[str, ...] = ("application/sdp",)
    uri_schemes: Collection[str] = ("sip", "sips")

    @property
    def allow_header(self) -> str:
        return ", ".join(self.allowed_methods)

    @property
    def supported_header(self) -> str:
        return ", ".join(self.supported)

    @property
    def accept_header(self) -> str:
        return ", ".join(self.accept)


def validate_request(req: SipRequest, policy: UasPolicy) -> None:
    """Raise SipError for a request this UAS must refuse before any method-specific processing."""
    for name in MANDATORY_HEADERS:
        if req.headers.get(name) is None:
            raise SipError(400, f"missing {name} header")
    # Typed access validates the syntax of the headers every later layer depends on.
    req.top_via  # noqa: B018
    req.from_  # noqa: B018
    req.to  # noqa: B018
    cseq = req.cseq
    if cseq.method != req.method:
        raise SipError(400, f"CSeq method {cseq.method} does not match request method {req.method}")
    max_forwards = req.max_forwards
    if max_forwards == 0 and req.method != "ACK":
        raise SipError(483, "Max-Forwards is 0")
    if req.method not in policy.allowed_methods:
        if req.method in KNOWN_METHODS:
            raise SipError(405, f"method {req.method} is not allowed here", headers=[("Allow", policy.allow_header)])
        raise SipError(501, f"method {req.method} is not implemented", headers=[("Allow", policy.allow_header)])
    scheme = req.uri.split(":", 1)[0].lower() if ":" in req.uri else ""
    if scheme not in policy.uri_schemes:
        raise SipError(416, f"unsupported Request-URI scheme {scheme or '(none)'!r}")
    if req.method not in _NO_REQUIRE_CHECK:
        supported = {o.lower() for o in policy.supported}
        unknown = [tag for tag in req.headers.get_all("Require") if tag.lower() not in supported]
        if unknown:
            raise SipError(
                420,
                f"unsupported extension {', '.join(unknown)}",
                headers=[("Unsupported", ", ".join(unknown))],
            )


def check_body_type(req: SipRequest, policy: UasPolicy) -> None:
    """A body we cannot read -> 415 with Accept (RFC 3261 section 8.2.3)."""
    if not req.body:
        return
    ctype = (req.content_type or "").split(";", 1)[0].strip().lower()
    if ctype not in {a.lower() for a in policy.accept}:
        raise SipError(
            415, f"unsupported Content-Type {ctype or '(none)'}", headers=[("Accept", policy.accept_header)]
        )
    encoding = req.headers.get("Content-Encoding")
    if encoding and encoding.strip().lower() != "identity":
        raise SipError(
            415,
            f"unsupported Content-Encoding {encoding.strip()}",
            headers=[("Accept-Encoding", "identity")],
        )


def check_accepts(req: SipRequest, produced: str = "application/sdp") -> None:
    """A request whose Accept excludes the body type we answer with -> 406 (RFC 3261 section 21.4.7)."""
    accept = req.headers.get_all("Accept")
    if not accept:
        return
    major = produced.split("/", 1)[0]
    for item in accept:
        mime = item.split(";", 1)[0].strip().lower()
        if mime in (produced, f"{major}/*", "*/*"):
            return
    raise SipError(406, f"Accept does not allow {produced}", headers=[("Accept", produced)])
