"""SDP for the recording server: parsing and serialisation (RFC 8866) and the SIPREC answer (RFC 7866, RFC 3264).

Sans-I/O: text in, typed model out. Import everything from here; the submodules are an implementation detail.
"""

from siprec.srs.sdp.answer import (
    SRTP_SUITES,
    NegotiatedStream,
    OfferChange,
    PortSource,
    SrtpParams,
    build_answer,
    default_srtp_key,
    diff_streams,
)
from siprec.srs.sdp.model import (
    MAX_LINES,
    MAX_MEDIA,
    MAX_SDP_SIZE,
    STATIC_PAYLOAD_TYPES,
    Attribute,
    Bandwidth,
    Codec,
    Connection,
    CryptoAttribute,
    Direction,
    MediaDescription,
    Origin,
    RtcpAttribute,
    SdpError,
    SessionDescription,
)
from siprec.srs.sdp.wire import parse_sdp, serialize_sdp

__all__ = [
    "MAX_LINES",
    "MAX_MEDIA",
    "MAX_SDP_SIZE",
    "SRTP_SUITES",
    "STATIC_PAYLOAD_TYPES",
    "Attribute",
    "Bandwidth",
    "Codec",
    "Connection",
    "CryptoAttribute",
    "Direction",
    "MediaDescription",
    "NegotiatedStream",
    "OfferChange",
    "Origin",
    "PortSource",
    "RtcpAttribute",
    "SdpError",
    "SessionDescription",
    "SrtpParams",
    "build_answer",
    "default_srtp_key",
    "diff_streams",
    "parse_sdp",
    "serialize_sdp",
]
