"""Helpers for the metadata tests (not a test module): cut the parts out of the multipart bodies in the shared
SIPREC fixtures, and hypothesis strategies for rs-metadata documents.

The splitter is deliberately small so the metadata tests do not depend on siprec.sip.multipart (another module,
written in parallel); it only has to handle the fixture files.
"""

from __future__ import annotations

import re
from xml.sax.saxutils import escape, quoteattr

from hypothesis import strategies as st


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


_TAGS = ["recording", "participant", "stream", "nameID", "name", "send", "recv", "label", "datamode",
         "participantstreamassoc", "participantsessionassoc", "session", "group", "id", "aor", "x:ext"]  # fmt: skip
_ATTRS = ["participant_id", "stream_id", "session_id", "id", "session", "aor", "xmlns:x"]


@st.composite
def xmlish(draw: st.DrawFn) -> bytes:
    """Random mixes of real element names, attributes, text and junk: reaches the model builder, not only expat."""
    token = st.one_of(
        st.sampled_from(_TAGS).map(lambda t: f"<{t}>"),
        st.sampled_from(_TAGS).map(lambda t: f"</{t}>"),
        st.sampled_from(_TAGS).map(lambda t: f"<{t}/>"),
        st.tuples(st.sampled_from(_TAGS), st.sampled_from(_ATTRS), st.text(max_size=5)).map(
            lambda t: f'<{t[0]} {t[1]}="{t[2]}">'
        ),
        st.text(max_size=8),
        st.sampled_from(["&amp;", "&e;", "<!DOCTYPE r>", "<![CDATA[x]]>", "<!-- c -->", "<?pi x?>"]),
    )
    body = "".join(draw(st.lists(token, max_size=30)))
    return f"<recording>{body}</recording>".encode(errors="surrogatepass")


_TIMES = ["associate-time", "disassociate-time"]
# Which children each element usually has; any known name may also turn up anywhere (vendor junk).
_GRAMMAR: dict[str, list[str]] = {
    "": ["datamode", "dataMode", "participant", "participant", "stream", "stream", "session", "group",
         "participantstreamassoc", "participantsessionassoc", "sessionrecordingassoc", "extensiondata"],
    "participant": ["nameID", "aor", "name", "send", "recv", *_TIMES, "extensiondata"],
    "nameID": ["name", "aor"],
    "stream": ["label", "mode", *_TIMES],
    "session": ["sipSessionID", "group-ref", "start-time", "stop-time", *_TIMES],
    "group": _TIMES,
    "participantstreamassoc": ["send", "recv"],
    "participantsessionassoc": _TIMES,
    "sessionrecordingassoc": _TIMES,
    "send": ["id"],
    "recv": ["id"],
}  # fmt: skip
_ALL_NAMES = sorted({n for names in _GRAMMAR.values() for n in names} | set(_GRAMMAR) - {""})
_ID_ATTRS = ["participant_id", "stream_id", "session_id", "group_id", "id", "session", "aor", "label"]
_VALUES = ["a", "b", "s1", "s2", "1", "2", " ", "", "partial", "complete", "sip:x@y", "<&\"'>", "\u00e9"]
_IDS = ["a", "b", "s1", "s2", " "]
# The attribute that usually names an element, and the text a leaf usually holds.
_ID_ATTR = {"participant": ["participant_id", "id"], "stream": ["stream_id", "id"], "session": ["session_id", "id"],
            "group": ["group_id", "id"], "participantstreamassoc": ["participant_id"],
            "participantsessionassoc": ["participant_id"], "sessionrecordingassoc": ["session_id"]}  # fmt: skip
_TEXT = {"label": ["1", "2", "x"], "send": _IDS, "recv": _IDS, "id": _IDS, "datamode": ["partial", "complete"],
         "dataMode": ["partial", "complete"]}  # fmt: skip


@st.composite
def metadata_documents(draw: st.DrawFn) -> bytes:
    """Well-formed documents shaped like rs-metadata (real element and attribute names, mostly in the right
    places), ids drawn from a small pool so that references (send -> stream, assoc -> participant) often hit."""

    def element(parent: str, depth: int) -> str:
        usual = _GRAMMAR.get(parent, [])
        junk = not usual or draw(st.integers(0, 9)) == 0
        tag = draw(st.sampled_from(_ALL_NAMES if junk else usual))
        attrs = draw(st.dictionaries(st.sampled_from(_ID_ATTRS), st.sampled_from(_VALUES), max_size=1))
        if tag in _ID_ATTR and draw(st.integers(0, 5)):
            attrs[draw(st.sampled_from(_ID_ATTR[tag]))] = draw(st.sampled_from(_IDS))
        text = escape(draw(st.sampled_from(_TEXT.get(tag, _VALUES) if draw(st.integers(0, 5)) else _VALUES)))
        n = draw(st.integers(0, 3)) if depth < 4 and tag in _GRAMMAR else 0
        inner = "".join(element(tag, depth + 1) for _ in range(n))
        attr_text = "".join(f" {k}={quoteattr(v)}" for k, v in attrs.items())
        return f"<{tag}{attr_text}>{text}{inner}</{tag}>"

    root = draw(st.sampled_from(["recording", "recording_metadata", "tns:recording"]))
    ns = draw(st.sampled_from(["urn:ietf:params:xml:ns:recording:1", "urn:ietf:params:xml:ns:recording", ""]))
    if root.startswith("tns:"):
        ns = ns or "urn:ietf:params:xml:ns:recording"  # a prefix cannot be bound to no namespace
        decl = f' xmlns:tns="{ns}"'
    else:
        decl = f' xmlns="{ns}"' if ns else ""
    body = "".join(element("", 1) for _ in range(draw(st.integers(0, 10))))
    return f"<{root}{decl}>{body}</{root}>".encode()
