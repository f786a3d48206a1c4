"""Parse RFC 7865 rs-metadata documents (and what vendors really send) into `RecordingMetadata`.

Sans-I/O: bytes in, typed model out. Elements are matched on their local name, case-insensitively, so the RFC
namespace (`urn:ietf:params:xml:ns:recording:1`), the Oracle/Acme, Metaswitch and Sonus one without `:1` (with or
without a `tns:` prefix), and BroadWorks/Webex `<recording_metadata xmlns="urn:ietf:params:xml:ns:siprec">` all
parse the same way, and `datamode`/`dataMode` are one element. Ids come from the RFC attributes (`participant_id`,
`stream_id`, ...), from Oracle/Acme `id=`/`session=`, or from BroadWorks `<id>` children.

Hostile XML (DTDs, entities, external references) is refused by defusedxml before anything is expanded. A
well-formed document with nothing usable in it is not an error: it yields an empty model and the call is recorded
with its participants unknown.
"""

from __future__ import annotations

from collections.abc import Iterator
from xml.etree.ElementTree import Element, ParseError, tostring

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from siprec.srs.metadata_model import (
    DataMode,
    Group,
    MetadataError,
    Participant,
    ParticipantSessionAssoc,
    ParticipantStreamAssoc,
    RecordingMetadata,
    Session,
    Stream,
    speaker_name,
)
from siprec.srs.metadata_state import LegAttribution, MetadataChange, MetadataState, resolve_labels

__all__ = [
    "MAX_METADATA_BYTES",
    "DataMode",
    "Group",
    "LegAttribution",
    "MetadataChange",
    "MetadataError",
    "MetadataState",
    "Participant",
    "ParticipantSessionAssoc",
    "ParticipantStreamAssoc",
    "RecordingMetadata",
    "Session",
    "Stream",
    "parse_metadata",
    "resolve_labels",
    "speaker_name",
]

MAX_METADATA_BYTES = 256 * 1024
# Real documents nest 4-6 levels; the bound keeps every walk (and extension serialisation) far from recursion limits.
MAX_DEPTH = 64

ROOTS = frozenset({"recording", "recording_metadata"})

# Children understood per element (lower-cased local names); any other child is kept raw in `extensions`.
_TIME = {"associate-time", "disassociate-time"}
_KNOWN_GROUP = _TIME | {"id"}
_KNOWN_SESSION = _TIME | {"id", "sipsessionid", "group-ref", "start-time", "stop-time"}
_KNOWN_PARTICIPANT = _TIME | {"id", "nameid", "aor", "name", "send", "recv"}
_KNOWN_STREAM = _TIME | {"id", "label", "mode"}


def parse_metadata(data: bytes, *, max_bytes: int = MAX_METADATA_BYTES) -> RecordingMetadata:
    """Parse one rs-metadata body. Raises `MetadataError` (400) for anything that is not a usable document."""
    data = bytes(data)
    if len(data) > max_bytes:
        raise MetadataError(f"rs-metadata: document too large ({len(data)} bytes, limit {max_bytes})")
    if not data.strip():
        raise MetadataError("rs-metadata: empty document")
    root = _parse_xml(data)
    _check_depth(root)
    name = _local(root.tag)
    if name.lower() not in ROOTS:
        raise MetadataError(f"rs-metadata: root element must be <recording>, got <{_safe(name)}>")
    return _build(root)


def _parse_xml(data: bytes) -> Element:
    try:
        return fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise MetadataError("rs-metadata: DTD/entities not allowed") from exc
    except ParseError as exc:
        raise MetadataError(f"rs-metadata: not well-formed XML ({_safe(str(exc))})") from exc
    except (ValueError, LookupError, UnicodeError) as exc:
        # e.g. an XML declaration naming an encoding expat does not know.
        raise MetadataError(f"rs-metadata: not well-formed XML ({_safe(str(exc))})") from exc


def _check_depth(root: Element) -> None:
    stack: list[tuple[Element, int]] = [(root, 1)]
    while stack:
        elem, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise MetadataError(f"rs-metadata: elements nested deeper than {MAX_DEPTH} levels")
        stack.extend((child, depth + 1) for child in elem)


def _safe(text: str, limit: int = 80) -> str:
    # The warning ends up inside a quoted Warning header value: no quotes, backslashes or control characters.
    cleaned = "".join(c if c.isprintable() and c not in '"\\' else "?" for c in text)
    return cleaned[:limit]


# ---------------------------------------------------------------------------------------------------------------
# Element helpers (local names, case-insensitive)


def _local(tag: object) -> str:
    if not isinstance(tag, str):  # comments and processing instructions
        return ""
    return tag.rsplit("}", 1)[-1]


def _namespace(tag: str) -> str:
    return tag[1:].split("}", 1)[0] if tag.startswith("{") else ""


def _children(elem: Element, *names: str) -> Iterator[Element]:
    for child in elem:
        if _local(child.tag).lower() in names:
            yield child


def _child(elem: Element, *names: str) -> Element | None:
    return next(_children(elem, *names), None)


def _text(elem: Element | None) -> str | None:
    if elem is None or elem.text is None:
        return None
    return elem.text.strip() or None


def _child_text(elem: Element, *names: str) -> str | None:
    for child in _children(elem, *names):
        text = _text(child)
        if text is not None:
            return text
    return None


def _attr(elem: Element, *names: str) -> str | None:
    for key, value in elem.attrib.items():
        if _local(key).lower() in names and value.strip():
            return value.strip()
    return None


def _extensions(elem: Element, known: set[str]) -> list[str]:
    out: list[str] = []
    for child in elem:
        name = _local(child.tag).lower()
        if not name or name in known:
            continue
        tail, child.tail = child.tail, None  # the text after the element is not part of it
        out.append(tostring(child, encoding="unicode"))
        child.tail = tail
    return out


def _id_list(elem: Element) -> list[str]:
    """Stream ids of one <send>/<recv>: its text (RFC, Oracle) or its <id> children (BroadWorks)."""
    ids = [t for t in (_text(c) for c in _children(elem, "id")) if t]
    text = _text(elem)
    return [text, *ids] if text else ids


def _links(elem: Element, name: str) -> list[str]:
    return _unique([i for link in _children(elem, name) for i in _id_list(link)])


def _unique(items: list[str]) -> list[str]:
    # Order-preserving and linear: a hostile document may repeat one link tens of thousands of times.
    return list(dict.fromkeys(items))


def _element_id(elem: Element, rfc_attr: str) -> str | None:
    return _attr(elem, rfc_attr, "id") or _child_text(elem, "id")


# ---------------------------------------------------------------------------------------------------------------
# Document -> model


def _build(root: Element) -> RecordingMetadata:
    doc = RecordingMetadata(root=_local(root.tag), namespace=_namespace(str(root.tag)))
    doc.data_mode = _data_mode(_child_text(root, "datamode"))
    participants: dict[str, Participant] = {}
    streams: dict[str, Stream] = {}
    sessions: dict[str, Session] = {}
    groups: dict[str, Group] = {}
    recording_assocs: list[tuple[str, str | None, str | None]] = []
    known_top = {"datamode"}

    for elem in root:
        name = _local(elem.tag).lower()
        if name == "group":
            group = _group(elem, len(groups))
            groups.setdefault(group.id, group)
        elif name == "session":
            session = _session(elem, len(sessions))
            sessions.setdefault(session.id, session)
        elif name == "participant":
            participant = _participant(elem, len(participants))
            if participant is not None:
                participants.setdefault(participant.id, participant)
        elif name == "stream":
            stream = _stream(elem, len(streams))
            if stream is not None:
                streams.setdefault(stream.id, stream)
        elif name == "participantsessionassoc":
            pid = _attr(elem, "participant_id", "participant")
            if pid:
                doc.participant_session_assocs.append(
                    ParticipantSessionAssoc(
                        participant_id=pid,
                        session_id=_attr(elem, "session_id", "session"),
                        associate_time=_child_text(elem, "associate-time"),
                        disassociate_time=_child_text(elem, "disassociate-time"),
                    )
                )
        elif name == "participantstreamassoc":
            pid = _attr(elem, "participant_id", "participant")
            if pid:
                doc.participant_stream_assocs.append(
                    ParticipantStreamAssoc(
                        participant_id=pid, send=_links(elem, "send"), recv=_links(elem, "recv")
                    )
                )
        elif name == "sessionrecordingassoc":
            sid = _attr(elem, "session_id", "session")
            if sid:
                recording_assocs.append(
                    (sid, _child_text(elem, "associate-time"), _child_text(elem, "disassociate-time"))
                )
        elif name and name not in known_top:
            tail, elem.tail = elem.tail, None
            doc.extensions.append(tostring(elem, encoding="unicode"))
            elem.tail = tail

    for sid, assoc_time, disassoc_time in recording_assocs:
        session = sessions.get(sid)
        if session is not None:
            session.associate_time = assoc_time or session.associate_time
            session.disassociate_time = disassoc_time or session.disassociate_time
    for assoc in doc.participant_session_assocs:
        if assoc.participant_id in participants:
            participants[assoc.participant_id].apply_session_assoc(assoc)
    sends: dict[str, list[str]] = {pid: list(p.send) for pid, p in participants.items()}
    recvs: dict[str, list[str]] = {pid: list(p.recv) for pid, p in participants.items()}
    for link in doc.participant_stream_assocs:
        if link.participant_id in participants:
            sends[link.participant_id] += link.send
            recvs[link.participant_id] += link.recv
    for pid, p in participants.items():
        p.send, p.recv = _unique(sends[pid]), _unique(recvs[pid])

    doc.groups = list(groups.values())
    doc.sessions = list(sessions.values())
    doc.participants = list(participants.values())
    doc.streams = list(streams.values())
    return doc


def _data_mode(text: str | None) -> DataMode:
    # RFC 7865: absent means complete. Anything else than "partial" is read as complete rather than refused.
    return "partial" if text is not None and text.lower() == "partial" else "complete"


def _group(elem: Element, n: int) -> Group:
    return Group(
        id=_element_id(elem, "group_id") or f"#group-{n}",
        associate_time=_child_text(elem, "associate-time"),
        disassociate_time=_child_text(elem, "disassociate-time"),
        extensions=_extensions(elem, _KNOWN_GROUP),
    )


def _session(elem: Element, n: int) -> Session:
    return Session(
        id=_element_id(elem, "session_id") or f"#session-{n}",
        sip_session_ids=[t for t in (_text(c) for c in _children(elem, "sipsessionid")) if t],
        group_ref=_child_text(elem, "group-ref") or _attr(elem, "group_ref", "group"),
        start_time=_child_text(elem, "start-time"),
        stop_time=_child_text(elem, "stop-time"),
        associate_time=_child_text(elem, "associate-time"),
        disassociate_time=_child_text(elem, "disassociate-time"),
        extensions=_extensions(elem, _KNOWN_SESSION),
    )


def _participant(elem: Element, n: int) -> Participant | None:
    aor: str | None = None
    name: str | None = None
    for name_id in _children(elem, "nameid"):
        aor = aor or _attr(name_id, "aor") or _child_text(name_id, "aor")
        name = name or _child_text(name_id, "name")
    # BroadWorks and early drafts: <aor> and <name> directly inside <participant>.
    aor = aor or _child_text(elem, "aor")
    name = name or _child_text(elem, "name")
    pid = _element_id(elem, "participant_id")
    if pid is None:
        if aor is None and name is None:
            return None  # nothing to identify or show: not a usable participant
        pid = f"#participant-{n}"
    return Participant(
        id=pid,
        aor=aor,
        name=name,
        send=_links(elem, "send"),
        recv=_links(elem, "recv"),
        associate_time=_child_text(elem, "associate-time"),
        disassociate_time=_child_text(elem, "disassociate-time"),
        extensions=_extensions(elem, _KNOWN_PARTICIPANT),
    )


def _stream(elem: Element, n: int) -> Stream | None:
    label = _child_text(elem, "label") or _attr(elem, "label")
    sid = _element_id(elem, "stream_id")
    if sid is None:
        if label is None:
            return None
        sid = f"#stream-{n}"
    return Stream(
        id=sid,
        label=label,
        session_id=_attr(elem, "session_id", "session"),
        mode=_child_text(elem, "mode"),
        associate_time=_child_text(elem, "associate-time"),
        disassociate_time=_child_text(elem, "disassociate-time"),
        extensions=_extensions(elem, _KNOWN_STREAM),
    )
