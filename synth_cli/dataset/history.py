"""Each history message of a session parsed, converted, checked, scrubbed and serialised once.

Agents resend the whole conversation so far with every call, so call k of a session holds
again the input messages of call k-1 (and usually two more): without care, `filter` parses,
converts, validates, scrubs and writes the same messages over and over, O(steps²) work per
session. A :class:`History` (one per session being read) remembers the last call record's
input messages and, for each, what every step made of it; the next record of the session
only pays for its new messages. Nothing here changes a byte of the output: every shortcut
below is taken only where it gives exactly what the general path gives.

1. **Parsing** (:meth:`History.parse`, every mode). The stored JSON of a call record holds
   the earlier messages as the same text when the writer is canonical (this project's tracer,
   the published one's messages). When the row's text holds `"input_messages":[` exactly once,
   followed by the text of the remembered messages, that text is cut out and the rest parsed;
   the remembered (already parsed) messages are put back in front. That equals parsing the
   whole row: the cut text is a run of complete JSON values at the start of an array, and the
   array is the record's own `input_messages` (the key appears once, unescaped: a row with an
   escaped ASCII character `\\u00XX`, which no JSON writer emits for letters, is parsed whole).
   Anything else (the text differs, several records in a row, a parse error) parses the whole
   row, as before.
2. **Per message** (:meth:`History.call`, calls mode). Each input message is converted once
   (:func:`~synth_cli.dataset.convert.convert_input`: pure, its `skipped` counts replayed
   with every call that holds it), classed for validation (a plain `{"role", "content": str}`
   message adds no reason), scrubbed once (:meth:`~synth_cli.dataset.redact.Redactor.message`:
   what it finds counted with every example that holds it) and serialised once. A record
   whose messages hold a tool result (whose history the session's tool calls may repair)
   converts through :func:`~synth_cli.dataset.convert.convert_call`, as before.
3. **The line** (:meth:`History.line`): an example is `{"messages":[` + its messages' JSON
   joined by `,` + `]` + tools + `}` (orjson writes compact JSON, keys in order, so the parts
   are the bytes of the whole), and its de-duplication digest is BLAKE2b of those bytes: the
   history keeps the bytes of its messages and the hash state after them, so each call hashes
   only its new messages and its output.

Memory: per session being read, its last record's input messages, parsed, converted and
serialised (a few times the size of one record); :class:`Histories` keeps at most
:data:`OPEN` sessions' (sessions interleaved in the DB beyond that are parsed whole).
Nothing here prints.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from typing import Any

from synth_cli._json import dumps_bytes, loads
from synth_cli.dataset import convert as cv

#: sessions whose history is kept at once (a DB whose sessions interleave more than this is
#: parsed and converted call by call, as without this module).
OPEN = 64
_KEY = '"input_messages"'
_OPEN_ARRAY = '"input_messages":['
_MESSAGES = b'{"messages":['
DIGEST_SIZE = 12


class Entry:
    """One history message: converted (None: a role with no equivalent), its counts, its JSON."""

    __slots__ = ("message", "skips", "plain", "data", "found")

    def __init__(self, message: dict | None, skips: dict):
        self.message = message
        self.skips = skips  # what converting it counted in `skipped` ({} mostly)
        #: a `{"role", "content": str}` system/user/assistant message: validation finds nothing in it
        self.plain = message is not None and len(message) == 2 and type(message.get("content")) is str \
            and message["role"] in cv.PLAIN_ROLES
        self.data: bytes | None = None  # its scrubbed JSON, made when an example first writes it
        self.found: tuple = ()  # what scrubbing it found: (kind, count) pairs


class FastCall:
    """A call record converted through its session's :class:`History` (calls mode).

    Holds what :class:`~synth_cli.dataset.convert.ConvertedCall` holds but the input messages,
    which are the history's entries (all of them: the record's inputs are the history's).
    """

    __slots__ = ("history", "output", "tools", "parallel", "call_id", "model")
    tool_inputs = False  # a record with tool results goes through convert_call
    restored = 0

    def __init__(self, history: "History", output: dict | None, tools: list | None, parallel: bool | None,
                 call_id: str | None, model: str | None):
        self.history = history
        self.output = output
        self.tools = tools
        self.parallel = parallel
        self.call_id = call_id
        self.model = model


class History:
    """One session's last call record's input messages and what was made of each (see the module)."""

    __slots__ = ("raw", "canon", "cut", "entries", "skips", "converted", "tool", "nonplain", "assistant", "head",
                 "hasher", "written", "count", "found", "image")

    def __init__(self) -> None:
        self.raw: list | None = None  # the last record's input_messages, parsed
        #: their canonical JSON (orjson's), the array's items joined by "," (type-exact: 1, 1.0 and true differ)
        self.canon = ""
        #: the session's rows spell their messages that way (and the text has no key or escape): rows are cut
        self.cut = True
        self._reset()

    def _reset(self) -> None:
        self.entries: list[Entry] = []  # for raw[0:len(entries)]
        self.skips: dict[str, int] = {}  # the entries' `skipped` counts, added up
        self.converted = 0  # entries with a message
        self.tool = False  # an entry is a tool result
        self.nonplain = False  # an entry is not plain
        self.assistant = False  # an entry is an assistant's
        # the line so far: b'{"messages":[' + the JSON of entries[:written] (those with a message), joined
        self.head = _MESSAGES
        self.hasher = hashlib.blake2b(_MESSAGES, digest_size=DIGEST_SIZE)
        self.written = 0
        self.count = 0  # messages in `head`
        self.found: dict[str, int] = {}  # what scrubbing found in them, added up
        self.image = False  # b'"image_url"' in head

    # ----------------------------------------------------------------- 1. parsing

    def parse(self, text: Any) -> Any:
        """`loads(text)` of a row of this session, cheaper when it repeats the last record's messages."""
        raw = self.raw
        prefix = self.canon
        if raw and prefix and self.cut and type(text) is str:
            # The key once (not before this place, not in the remembered text, not after it), no
            # ASCII spelled \u00XX outside the remembered text (which has none either).
            at = text.find(_KEY)
            end = at + 18 + len(prefix)
            if at >= 0 and text.startswith(prefix, at + 18) and text.startswith(":[", at + 16) \
                    and end < len(text) and text[end] in ",]" and text.find(_KEY, end) < 0 \
                    and not _escaped_ascii(text, 0, at) and not _escaped_ascii(text, end, len(text)):
                rest = text[:at + 18] + text[end + 1 if text[end] == "," else end:]
                try:
                    records = loads(rest)
                except ValueError:
                    records = None
                record = records[0] if type(records) is list and len(records) == 1 else records
                if type(record) is dict:
                    tail = record.get("input_messages")
                    if type(tail) is list:
                        record["input_messages"] = messages = raw + tail
                        self.raw = messages
                        if tail:
                            more = dumps_bytes(tail)[1:-1].decode()
                            self.canon = prefix + "," + more
                            if not _cuttable(more):
                                self.cut = False
                        return records
        records = loads(text)  # the whole row: raises what it raises
        record = records[0] if type(records) is list and len(records) == 1 else records
        messages = record.get("input_messages") if type(record) is dict else None
        if type(messages) is list:
            self._take(messages, text)
        return records

    def _take(self, messages: list, text: Any) -> None:
        """A record parsed whole: its messages are the history now. The entries made for the last
        record's stay when its messages begin this one's as the same JSON (values equal as Python
        objects are not enough: 1, 1.0 and true compare equal, and are written differently)."""
        canon = dumps_bytes(messages)[1:-1].decode()
        old = self.canon
        if not self.raw or not canon.startswith(old) or (len(canon) > len(old) and canon[len(old)] != ","):
            self._reset()
        self.raw = messages
        self.canon = canon
        if self.cut and not (canon and type(text) is str and _cuttable(canon) and (_OPEN_ARRAY + canon) in text):
            self.cut = False  # this session's rows do not spell their messages as orjson does

    # ----------------------------------------------------------------- 2. converting

    def owns(self, record: dict) -> bool:
        """Is `record` the one whose messages this history holds (the row just parsed)?"""
        return self.raw is not None and record.get("input_messages") is self.raw

    def call(self, record: dict, skipped: dict) -> Any:
        """`record` (which :meth:`owns`) converted: a :class:`FastCall`, or a ConvertedCall when its
        messages hold a tool result. Counts in `skipped` what convert_call would; raises what it would."""
        raw = self.raw
        entries = self.entries
        if len(entries) < len(raw):
            self._extend(skipped)
        if self.tool:
            return cv.convert_call(record, skipped)
        for kind, n in self.skips.items():
            skipped[kind] = skipped.get(kind, 0) + n
        output = cv.convert_output(record, self.converted, skipped)
        tools, parallel = cv.convert_tools(record)
        return FastCall(self, output, tools, parallel, record.get("call_id"), record.get("model_name"))

    def _extend(self, skipped: dict) -> None:
        entries = self.entries
        raw = self.raw
        assert raw is not None
        start = len(entries)
        made: list[Entry] = []
        convert = cv.convert_input
        for i in range(start, len(raw)):
            counts: dict[str, int] = {}
            try:
                message = convert(raw[i], i, counts)
            except BaseException:
                # what convert_call would have counted before failing, then its error
                for table in (self.skips, *(e.skips for e in made), counts):
                    for kind, n in table.items():
                        skipped[kind] = skipped.get(kind, 0) + n
                self.raw = None
                self._reset()
                raise
            made.append(Entry(message, counts))
        for e in made:
            entries.append(e)
            for kind, n in e.skips.items():
                self.skips[kind] = self.skips.get(kind, 0) + n
            m = e.message
            if m is None:
                self.nonplain = True
                continue
            self.converted += 1
            role = m["role"]
            if role == "tool":
                self.tool = True
            elif role == "assistant":
                self.assistant = True
            if not e.plain:
                self.nonplain = True

    def messages(self) -> list[dict]:
        """The converted input messages (not scrubbed), for a full validation."""
        return [e.message for e in self.entries if e.message is not None]

    # ----------------------------------------------------------------- 3. the line

    def unwritten(self) -> list[dict]:
        """The converted messages not in :attr:`head` yet."""
        return [e.message for e in self.entries[self.written:] if e.message is not None]

    def extend_head(self, redactor: Any) -> None:
        """Scrub (`redactor`: None when nothing needs it) and serialise the entries not in :attr:`head`
        yet, and add them to it."""
        entries = self.entries
        if self.written == len(entries):
            return
        pieces = []
        count = self.count
        found = self.found
        for e in entries[self.written:]:
            m = e.message
            if m is None:
                continue
            if e.data is None:
                if redactor is not None:
                    m, e.found = redactor.message(m)
                e.data = dumps_bytes(m)
            for kind, n in e.found:
                found[kind] = found.get(kind, 0) + n
            if count:
                pieces.append(b",")
            pieces.append(e.data)
            count += 1
        data = b"".join(pieces)
        if not self.image and b'"image_url"' in data:
            self.image = True
        self.head += data
        self.hasher.update(data)
        self.count = count
        self.written = len(entries)


_ESCAPED_ASCII = re.compile(r"\\u00[2-7][0-9a-fA-F]")


def _escaped_ascii(text: str, start: int, end: int) -> bool:
    """Does `text[start:end]` spell a printable ASCII character as `\\u00XX` (which could hide a key)?"""
    return _ESCAPED_ASCII.search(text, start, end) is not None


def _cuttable(joined: str) -> bool:
    """Can the messages' text be looked for in the next row? Not when it holds the key or an escape
    (what :meth:`History.parse` relies on not being there)."""
    return _KEY not in joined and not _escaped_ascii(joined, 0, len(joined))


class Histories:
    """The histories of the sessions being read, at most :data:`OPEN` at once (least recently used go)."""

    __slots__ = ("open", "last_id", "last")

    def __init__(self) -> None:
        self.open: OrderedDict[Any, History] = OrderedDict()
        self.last_id: Any = None
        self.last: History | None = None

    def get(self, session_id: Any) -> History:
        if session_id == self.last_id and self.last is not None:
            return self.last
        history = self.open.get(session_id)
        if history is None:
            history = self.open[session_id] = History()
            if len(self.open) > OPEN:
                self.open.popitem(last=False)
        else:
            self.open.move_to_end(session_id)
        self.last_id, self.last = session_id, history
        return history

    def drop(self, session_id: Any) -> None:
        self.open.pop(session_id, None)
        if session_id == self.last_id:
            self.last_id = self.last = None


__all__ = ["DIGEST_SIZE", "OPEN", "Entry", "FastCall", "Histories", "History"]
