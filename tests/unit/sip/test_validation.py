from __future__ import annotations

import pytest

from siprec.sip.errors import SipError
from siprec.sip.message import Headers, SipRequest
from siprec.sip.validation import UasPolicy, check_accepts, check_body_type, validate_request

POLICY = UasPolicy(supported=("siprec", "timer"), accept=("application/sdp", "multipart/mixed"))


def request(method: str = "OPTIONS", uri: str = "sip:srs@192.0.2.1", **overrides: str | None) -> SipRequest:
    fields = {
        "Via": "SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKabc",
        "From": "<sip:src@192.0.2.9>;tag=1",
        "To": "<sip:srs@192.0.2.1>",
        "Call-ID": "call-1",
        "CSeq": f"1 {method}",
        "Max-Forwards": "70",
    }
    for name, value in overrides.items():
        name = name.replace("_", "-")
        if value is None:
            fields.pop(name, None)
        else:
            fields[name] = value
    return SipRequest(method=method, uri=uri, headers=Headers(fields.items()))


def refused(req: SipRequest) -> SipError:
    with pytest.raises(SipError) as exc:
        validate_request(req, POLICY)
    return exc.value


def test_valid_request_passes() -> None:
    validate_request(request(), POLICY)
    validate_request(request("INVITE", Require="siprec"), POLICY)


@pytest.mark.parametrize("missing", ["Via", "From", "To", "Call-ID", "CSeq"])
def test_missing_mandatory_header_is_400_naming_it(missing: str) -> None:
    err = refused(request(**{missing.replace("-", "_"): None}))
    assert err.status == 400
    assert err.warning == f"missing {missing} header"


def test_cseq_method_mismatch() -> None:
    err = refused(request("OPTIONS", CSeq="1 INVITE"))
    assert (err.status, err.warning) == (400, "CSeq method INVITE does not match request method OPTIONS")


def test_max_forwards_zero_is_483_and_bad_value_is_400() -> None:
    assert refused(request(Max_Forwards="0")).status == 483
    assert refused(request(Max_Forwards="abc")).status == 400
    validate_request(request(Max_Forwards=None), POLICY)  # absent is tolerated


def test_known_method_not_allowed_is_405_unknown_is_501_both_with_allow() -> None:
    err = refused(request("NOTIFY"))
    assert err.status == 405
    assert dict(err.headers)["Allow"] == "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE"
    err = refused(request("FROBNICATE"))
    assert (err.status, err.warning) == (501, "method FROBNICATE is not implemented")
    assert dict(err.headers)["Allow"] == "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE"


def test_unsupported_scheme_is_416() -> None:
    err = refused(request(uri="mailto:srs@example.com"))
    assert err.status == 416
    assert "mailto" in err.warning
    validate_request(request(uri="sips:srs@example.com"), POLICY)


def test_require_unknown_option_is_420_listing_only_unknown_ones() -> None:
    err = refused(request("INVITE", Require="siprec, 100rel, foo"))
    assert err.status == 420
    assert dict(err.headers)["Unsupported"] == "100rel, foo"
    # ACK and CANCEL are never refused for Require.
    validate_request(request("CANCEL", Require="foo"), POLICY)


def test_bad_via_or_from_is_400() -> None:
    assert refused(request(Via="garbage")).status == 400
    assert refused(request(From='"unterminated <sip:a@b>')).status == 400


def test_body_type() -> None:
    req = request("INVITE", Content_Type="application/sdp")
    req.body = b"v=0\r\n"
    check_body_type(req, POLICY)
    req.headers.set("Content-Type", "text/plain")
    with pytest.raises(SipError) as exc:
        check_body_type(req, POLICY)
    assert exc.value.status == 415
    assert dict(exc.value.headers)["Accept"] == "application/sdp, multipart/mixed"
    req.headers.set("Content-Type", "application/sdp")
    req.headers.set("Content-Encoding", "gzip")
    with pytest.raises(SipError):
        check_body_type(req, POLICY)


def test_accept_that_excludes_sdp_is_406() -> None:
    check_accepts(request("INVITE"))  # no Accept: anything goes
    check_accepts(request("INVITE", Accept="application/*"))
    check_accepts(request("INVITE", Accept="text/html, application/sdp;q=0.5"))
    with pytest.raises(SipError) as exc:
        check_accepts(request("INVITE", Accept="text/nobodyKnowsThis"))
    assert exc.value.status == 406
    assert dict(exc.value.headers)["Accept"] == "application/sdp"
