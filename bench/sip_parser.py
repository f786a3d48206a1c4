"""SIP parser throughput on one core: a typical SIPREC INVITE (~3 KB multipart) and a small OPTIONS.

`python -m bench.sip_parser` prints the table; `run()` returns its rows for the suite runner.
"""

from __future__ import annotations

import time
from pathlib import Path

from siprec.sip.multipart import parse_multipart
from siprec.sip.parser import StreamFramer, parse_message

TARGET_INVITES_PER_S = 20_000
_FIXTURE = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "siprec" / "invites"

# Used when the shared fixtures are not beside the repository: the shape of the Oracle/Acme body.
_FALLBACK_BODY = (
    "--unique-boundary-1\r\nContent-Type: application/sdp\r\n\r\n"
    "v=0\r\no=- 20076 595552 IN IP4 192.168.50.140\r\ns=-\r\nc=IN IP4 192.168.50.140\r\nt=0 0\r\n"
    "m=audio 20106 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=label:16777227\r\na=sendonly\r\n"
    "m=audio 20110 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=label:16777228\r\na=sendonly\r\n\r\n"
    "--unique-boundary-1\r\nContent-Type: application/rs-metadata+xml\r\n"
    "Content-Disposition: recording-session\r\n\r\n"
    '<?xml version="1.0" encoding="UTF-8"?>\r\n<recording xmlns="urn:ietf:params:xml:ns:recording">\r\n'
    + "<participant id='x'><nameID aor='sip:alice@example.com'><name>Alice</name></nameID></participant>\r\n"
    * 18
    + "</recording>\r\n\r\n--unique-boundary-1--\r\n"
)


def siprec_invite() -> bytes:
    path = _FIXTURE / "acme-siprec-offer.txt"
    body = (path.read_text().replace("\r\n", "\n").replace("\n", "\r\n") if path.is_file() else _FALLBACK_BODY).encode()
    head = (
        "INVITE sip:srs@10.0.0.5:5060;transport=udp SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.168.50.140:5060;branch=z9hG4bK-524287-1---a4b1f1e0c3d2;rport\r\n"
        "Via: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bK7c2f9a;received=10.1.1.1\r\n"
        "Max-Forwards: 69\r\n"
        'From: "Session Recording Client" <sip:src@192.168.50.140:5060>;tag=a94c095b773be1dd6e8d668a785a9c84\r\n'
        "To: <sip:srs@10.0.0.5:5060>\r\n"
        "Call-ID: 8bb9d7bb-9f3a-4c58-a0de-4e2d0d5e7b9b@192.168.50.140\r\n"
        "CSeq: 1 INVITE\r\n"
        "Contact: <sip:src@192.168.50.140:5060;transport=udp>;+sip.src\r\n"
        "Require: siprec\r\n"
        "Supported: timer, replaces, 100rel\r\n"
        "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO\r\n"
        "Session-Expires: 1800;refresher=uac\r\n"
        "User-Agent: Oracle-SBC/8.4\r\n"
        "Content-Type: multipart/mixed;boundary=unique-boundary-1\r\n"
        "MIME-Version: 1.0\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


OPTIONS = (
    b"OPTIONS sip:srs@10.0.0.5 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776asdhds\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:ping@10.0.0.1>;tag=1928301774\r\n"
    b"To: <sip:srs@10.0.0.5>\r\n"
    b"Call-ID: a84b4c76e66710@10.0.0.1\r\n"
    b"CSeq: 63104 OPTIONS\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def _rate(fn, arg: bytes, seconds: float = 1.0) -> float:
    fn(arg)
    best = 0.0
    for _ in range(3):
        n = 0
        start = time.perf_counter()
        deadline = start + seconds / 3
        while True:
            for _ in range(200):
                fn(arg)
            n += 200
            now = time.perf_counter()
            if now >= deadline:
                break
        best = max(best, n / (now - start))
    return best


def run() -> list[dict]:
    invite = siprec_invite()
    rows = [
        {
            "name": f"parse SIPREC INVITE ({len(invite)} B, UDP)",
            "value": round(_rate(parse_message, invite)),
            "unit": "msg/s",
            "target": f">= {TARGET_INVITES_PER_S}",
        },
        {"name": "parse OPTIONS (UDP)", "value": round(_rate(parse_message, OPTIONS)), "unit": "msg/s", "target": ""},
    ]
    msg = parse_message(invite)

    def with_parts(data: bytes) -> None:
        m = parse_message(data)
        parse_multipart(m.content_type or "", m.body)

    rows.append(
        {
            "name": "parse INVITE + split multipart body",
            "value": round(_rate(with_parts, invite)),
            "unit": "msg/s",
            "target": "",
        }
    )
    stream = invite * 20

    def frame(data: bytes) -> None:
        StreamFramer().feed(data)

    rows.append(
        {
            "name": "StreamFramer (20 INVITEs per feed)",
            "value": round(_rate(frame, stream) * 20),
            "unit": "msg/s",
            "target": "",
        }
    )
    assert msg.method == "INVITE"
    return rows


def main() -> None:
    rows = run()
    width = max(len(r["name"]) for r in rows)
    print(f"{'benchmark'.ljust(width)}  {'value':>10}  unit    target")
    for r in rows:
        print(f"{r['name'].ljust(width)}  {r['value']:>10,}  {r['unit']:<6}  {r['target']}")


if __name__ == "__main__":
    main()
