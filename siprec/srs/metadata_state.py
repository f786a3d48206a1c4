"""Explicit metadata state of one recording session, and which participant speaks on which SDP m-line.

`MetadataState.apply` takes each parsed rs-metadata document in arrival order (INVITE, re-INVITE, UPDATE):
a complete document replaces the snapshot, a partial one is merged into it by id (RFC 7865 section 6 and the 8.2
example). It returns a `MetadataChange` so the session can emit session_updated only when something changed.
`resolve_labels` then maps SDP m-lines to participants and records which rule decided.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal, TypeVar

from siprec.srs.metadata_model import (
    DataMode,
    Group,
    Participant,
    RecordingMetadata,
    Session,
    Stream,
)

Rule = Literal["metadata-label", "metadata-stream", "sdp-order", "unknown"]

_T = TypeVar("_T", Group, Session, Participant, Stream)
_D = TypeVar("_D", Participant, Stream)


@dataclass
class MetadataChange:
    """What one document changed. Removed covers both "absent from a complete document" and "disassociated"."""

    version: int
    data_mode: DataMode
    participants_added: list[Participant] = field(default_factory=list)
    participants_removed: list[Participant] = field(default_factory=list)
    participants_changed: list[Participant] = field(default_factory=list)
    streams_added: list[Stream] = field(default_factory=list)
    streams_removed: list[Stream] = field(default_factory=list)
    streams_changed: list[Stream] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(
            (
                self.participants_added,
                self.participants_removed,
                self.participants_changed,
                self.streams_added,
                self.streams_removed,
                self.streams_changed,
            )
        )


def _copy(item: _T) -> _T:
    # Own copies of every list, so the state never aliases a parsed document the caller may keep.
    if isinstance(item, Participant):
        return replace(item, send=list(item.send), recv=list(item.recv), extensions=list(item.extensions))
    if isinstance(item, Session):
        return replace(item, sip_session_ids=list(item.sip_session_ids), extensions=list(item.extensions))
    return replace(item, extensions=list(item.extensions))


def _merge_scalars(old: _T, new: _T, names: tuple[str, ...]) -> None:
    # In a partial document an absent child means "unchanged", never "cleared".
    for name in names:
        value = getattr(new, name)
        if value is not None:
            setattr(old, name, value)
    if new.extensions:
        old.extensions = list(new.extensions)


class MetadataState:
    """Merged view of every rs-metadata document received for one recording session."""

    def __init__(self) -> None:
        self.version = 0  # documents applied so far: the k of metadata-<k>.xml
        self.data_mode: DataMode = "complete"  # of the last document
        self._groups: dict[str, Group] = {}
        self._sessions: dict[str, Session] = {}
        self._participants: dict[str, Participant] = {}
        self._streams: dict[str, Stream] = {}
        self._extensions: list[str] = []

    @property
    def participants(self) -> list[Participant]:
        """All known participants in document order, disassociated ones included (with their disassociate_time)."""
        return list(self._participants.values())

    @property
    def active_participants(self) -> list[Participant]:
        return [p for p in self._participants.values() if p.active]

    @property
    def streams(self) -> list[Stream]:
        return list(self._streams.values())

    def participant(self, participant_id: str) -> Participant | None:
        return self._participants.get(participant_id)

    def stream(self, stream_id: str) -> Stream | None:
        return self._streams.get(stream_id)

    def snapshot(self) -> RecordingMetadata:
        """The merged state as one complete document (copies)."""
        return RecordingMetadata(
            data_mode="complete",
            groups=[_copy(g) for g in self._groups.values()],
            sessions=[_copy(s) for s in self._sessions.values()],
            participants=[_copy(p) for p in self._participants.values()],
            streams=[_copy(s) for s in self._streams.values()],
            extensions=list(self._extensions),
        )

    def apply(self, doc: RecordingMetadata) -> MetadataChange:
        before_p = {k: _copy(p) for k, p in self._participants.items()}
        before_s = {k: _copy(s) for k, s in self._streams.items()}
        if doc.data_mode == "complete":
            self._replace(doc)
        else:
            self._merge(doc)
        self.version += 1
        self.data_mode = doc.data_mode
        change = MetadataChange(version=self.version, data_mode=doc.data_mode)
        change.participants_added, change.participants_removed, change.participants_changed = _diff(
            before_p, self._participants, ("aor", "name", "send", "recv")
        )
        change.streams_added, change.streams_removed, change.streams_changed = _diff(
            before_s, self._streams, ("label", "session_id", "mode")
        )
        return change

    def _replace(self, doc: RecordingMetadata) -> None:
        self._groups = {g.id: _copy(g) for g in doc.groups}
        self._sessions = {s.id: _copy(s) for s in doc.sessions}
        self._participants = {p.id: _copy(p) for p in doc.participants}
        self._streams = {s.id: _copy(s) for s in doc.streams}
        self._extensions = list(doc.extensions)

    def _merge(self, doc: RecordingMetadata) -> None:
        times = ("associate_time", "disassociate_time")
        for g in doc.groups:
            _upsert(self._groups, g, times)
        for s in doc.sessions:
            old = _upsert(self._sessions, s, ("group_ref", "start_time", "stop_time", *times))
            if old is not None:
                old.sip_session_ids = list(dict.fromkeys([*old.sip_session_ids, *s.sip_session_ids]))
        for st in doc.streams:
            _upsert(self._streams, st, ("label", "session_id", "mode", *times))
        linked = {a.participant_id for a in doc.participant_stream_assocs}
        for p in doc.participants:
            old = _upsert(self._participants, p, ("aor", "name", *times))
            # A participant's stream links, when the document states them, are its current set (replace, not union).
            if old is not None and (p.send or p.recv or p.id in linked):
                old.send, old.recv = list(p.send), list(p.recv)
        # Associations may name participants that this partial document does not repeat (RFC 7865 8.2).
        in_doc = {p.id for p in doc.participants}
        for assoc in doc.participant_session_assocs:
            known = self._participants.get(assoc.participant_id)
            if known is not None and assoc.participant_id not in in_doc:
                known.apply_session_assoc(assoc)
        for link in doc.participant_stream_assocs:
            known = self._participants.get(link.participant_id)
            if known is not None and link.participant_id not in in_doc:
                known.send, known.recv = list(link.send), list(link.recv)
        if doc.extensions:
            self._extensions = list(doc.extensions)


def _upsert(table: dict[str, _T], new: _T, names: tuple[str, ...]) -> _T | None:
    """Add a copy of `new`, or merge it into the existing entry and return that entry."""
    old = table.get(new.id)
    if old is None:
        table[new.id] = _copy(new)
        return None
    _merge_scalars(old, new, names)
    return old


def _diff(
    before: dict[str, _D], after: dict[str, _D], fields: tuple[str, ...]
) -> tuple[list[_D], list[_D], list[_D]]:
    added: list[_D] = []
    removed: list[_D] = []
    changed: list[_D] = []
    for key, new in after.items():
        old = before.get(key)
        was_active = old is not None and old.active
        if new.active and not was_active:
            added.append(new)
        elif was_active and not new.active:
            removed.append(new)
        elif was_active and any(getattr(old, f) != getattr(new, f) for f in fields):
            changed.append(new)
    removed += [old for key, old in before.items() if key not in after and old.active]
    return added, removed, changed


# ---------------------------------------------------------------------------------------------------------------
# SDP m-line -> participant


@dataclass
class LegAttribution:
    """Who speaks on SDP m-line `index`. `participant` is the first sender; `participants` all senders (a mixed
    stream has several), or the one participant chosen by SDP order."""

    index: int
    label: str | None
    participant: Participant | None
    rule: Rule
    participants: list[Participant] = field(default_factory=list)
    stream_id: str | None = None  # the metadata stream that decided, for the metadata rules


def resolve_labels(
    state: MetadataState | RecordingMetadata, sdp_labels: list[str | None]
) -> list[LegAttribution]:
    """Attribute each SDP m-line (its a=label, or None) to a participant.

    Rules, first that applies wins:
    1. "metadata-label": a metadata stream has the m-line's label and some participant sends it.
    2. "metadata-stream": a participant stream association decides by stream id, the stream being the one whose
       id the SDP label carries, or (when the label matches no metadata label) the metadata stream at the same
       position whose own label no m-line claims.
    3. "sdp-order": m-line i -> i-th participant in document order.
    4. "unknown".
    """
    participants = list(state.participants)
    streams = list(state.streams)
    # stream id -> senders, built once: documents can be large, and lookups per m-line must stay cheap.
    senders_of: dict[str, list[Participant]] = {}
    for p in sorted(participants, key=lambda p: not p.active):  # stable: active senders first
        for stream_id in dict.fromkeys(p.send):
            senders_of.setdefault(stream_id, []).append(p)
    labels = [_norm(label) for label in sdp_labels]
    streams_by_id = {s.id: s for s in streams}
    meta_labels = {s.label for s in streams if s.label is not None}
    claimed = {label for label in labels if label is not None}
    out: list[LegAttribution] = []
    for i, label in enumerate(labels):
        rule: Rule = "unknown"
        chosen: Stream | None = None
        senders: list[Participant] = []
        if label is not None:
            for s in streams:
                if s.label == label and (found := senders_of.get(s.id)):
                    chosen, senders, rule = s, found, "metadata-label"
                    break
        if not senders:
            by_id = streams_by_id.get(label) if label is not None else None
            if (
                by_id is None
                and label not in meta_labels
                and i < len(streams)
                and streams[i].label not in claimed
            ):
                by_id = streams[i]
            if by_id is not None and (found := senders_of.get(by_id.id)):
                chosen, senders, rule = by_id, found, "metadata-stream"
        if senders:
            out.append(
                LegAttribution(
                    i, sdp_labels[i], senders[0], rule, list(senders), chosen.id if chosen else None
                )
            )
        elif i < len(participants):
            p = participants[i]
            out.append(LegAttribution(i, sdp_labels[i], p, "sdp-order", [p]))
        else:
            out.append(LegAttribution(i, sdp_labels[i], None, "unknown"))
    return out


def _norm(label: str | None) -> str | None:
    if label is None:
        return None
    return label.strip() or None
