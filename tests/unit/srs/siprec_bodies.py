"""Cut the parts out of the multipart bodies in the shared SIPREC fixtures (test helper, not a test module).

A deliberately small splitter so the metadata tests do not depend on siprec.sip.multipart (another module, written
in parallel); it only has to handle the fixture files.
"""

from __future__ import annotations

import re


def split_parts(text: str) -> list[tuple[dict[str, str], str]]:
    """(headers with lower-cased names, body) of each part of a multipart body or of a whole INVITE."""
    text = text.replace("\r\n", "\n")
    boundary = next(line.strip() for line in text.split("\n") if line.strip().startswith("--"))
    chunks = re.split(r"(?m)^" + re.escape(boundary) + r"(?:--)?[ \t]*$", text)
    parts = []
    for chunk in chunks[1:]:
        head, _, body = chunk.lstrip("\n").partition("\n\n")
        headers = {}
        for line in head.split("\n"):
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        parts.append((headers, body.removesuffix("\n")))
    return parts


def metadata_part(text: str) -> bytes | None:
    for headers, body in split_parts(text):
        if "rs-metadata" in headers.get("content-type", "") or "recording-session" in headers.get(
            "content-disposition", ""
        ):
            return body.encode()
    return None


def sdp_labels(text: str) -> list[str | None]:
    """a=label of each m-line of the invite's SDP part, None where an m-line has none."""
    sdp = next(
        body for headers, body in split_parts(text) if headers.get("content-type") == "application/sdp"
    )
    labels: list[str | None] = []
    for line in sdp.split("\n"):
        if line.startswith("m="):
            labels.append(None)
        elif line.startswith("a=label:") and labels:
            labels[-1] = line.removeprefix("a=label:").strip()
    return labels
