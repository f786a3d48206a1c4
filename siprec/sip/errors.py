"""One error type for every layer of the SIP stack.

Parsers, transactions, dialogs and the SIPREC layer raise `SipError`; the transport-facing code turns it into a
response (status, reason, Warning header, extra headers) without knowing who raised it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# RFC 3261 section 20.43 warn-codes used by this server.
WARN_MISC = 399  # "Miscellaneous warning"
WARN_INCOMPATIBLE_MEDIA = 305  # "Incompatible media format"
WARN_INCOMPATIBLE_TRANSPORT = 302  # "Incompatible transport protocol"
WARN_INCOMPATIBLE_NETWORK = 300  # "Incompatible network protocol"


@dataclass(eq=False)
class SipError(Exception):
    """A request that must be answered with an error status.

    `warning` becomes a `Warning: 399 <agent> "<text>"` header; `headers` are added to the response as they are
    (e.g. Retry-After, Unsupported, Allow, Min-SE).
    """

    status: int
    warning: str = ""
    reason: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    warn_code: int = WARN_MISC

    def __post_init__(self) -> None:
        Exception.__init__(self, f"{self.status} {self.warning}".strip())

    def __str__(self) -> str:
        return f"{self.status} {self.warning}".strip()


class SipParseError(SipError):
    """Bytes that are not a well-formed SIP message (always status 400 unless said otherwise)."""

    def __init__(self, warning: str, status: int = 400, *, partial: object | None = None) -> None:
        super().__init__(status=status, warning=warning)
        # Whatever could be parsed before the error: a SipRequest whose Via/From/To/Call-ID/CSeq may allow a reply.
        self.partial = partial
