"""Scrub high-confidence secrets (and, on request, PII) from the examples `filter` writes.

Trace data holds what agents saw: keys in tool outputs, tokens in environment dumps,
private keys in files they read. A model fine-tuned on them can repeat them, so by
default every string an example carries (message content and text parts, names, tool
call names and arguments, tool results, the offered tools) is scrubbed: each secret is
replaced by a typed placeholder, ``[REDACTED:<kind>]``, and counted by kind.

Kinds (:data:`SECRET_KINDS`), each a pattern with a fixed, documented shape; high entropy
alone never triggers a redaction, so ids, hashes, base64 payloads survive, and image
parts are never looked at (an image comes out byte-identical):

* ``openai_key``: ``sk-…`` / ``sk-proj-…`` / ``sk-svcacct-…`` / ``sk-admin-…``, 20+ key characters with
  letters and digits;
* ``anthropic_key``: ``sk-ant-api03-…`` (also ``admin``/``oat`` keys);
* ``aws_access_key``: ``AKIA``/``ASIA``/``ABIA``/``ACCA`` + 16 upper-case letters or digits;
* ``github_token``: ``ghp_``/``gho_``/``ghu_``/``ghs_``/``ghr_`` + 36 characters, ``github_pat_…``;
* ``gitlab_token``: ``glpat-`` + 20 characters;
* ``slack_token``: ``xoxb-``/``xoxp-``/``xoxa-``/``xoxr-``/``xoxs-``/``xoxo-`` tokens;
* ``google_api_key``: ``AIza`` + 35 characters;
* ``jwt``: three base64url segments, the first two JSON objects (``eyJ…``);
* ``private_key``: a PEM ``-----BEGIN … PRIVATE KEY-----`` block (to its END line, or to the
  end of the base64 run when the text was cut);
* ``secret_assignment``: ``NAME=value`` / ``NAME: value`` / ``"NAME": "value"`` whose name says
  secret, password, token or key (``DB_PASSWORD``, ``GITHUB_TOKEN``, ``api_key``,
  ``AWS_SECRET_ACCESS_KEY``, ``client_secret``…; not ``max_tokens``, ``monkey``, ``keyboard``);
  the value (6+ characters, not only digits, not a placeholder such as ``${VAR}`` or
  ``<your-key>``) is replaced, the name kept. A bare ``key:``/``token:`` in prose is not an
  assignment; in JSON tool arguments a string value under such a key is.

With ``pii=True`` (``--redact pii``) also ``email`` and ``phone`` (9 to 15 digits with the
usual separators; dates, versions and IP addresses are not phone numbers).

Tool arguments that hold JSON are parsed and walked, so the result is still the same
JSON (re-serialized only when something was replaced). Results are memoised by string:
agents resend the same history on every call, so each distinct string is scanned once.

Why patterns here rather than a detector library: see docs/performance.md (redaction)
and the commit that added this module. Nothing here prints.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

SECRET_KINDS = ("openai_key", "anthropic_key", "aws_access_key", "github_token", "gitlab_token", "slack_token",
                "google_api_key", "jwt", "private_key", "secret_assignment")
PII_KINDS = ("email", "phone")

_K = r"[A-Za-z0-9_-]"
# The name of an assignment: segments joined by _ . -, whose last one says secret, password,
# token or key (`(?<!…)` so a match never starts inside a word: `monkey` is not `key`, and the
# name must end there: `max_tokens` is not `token`).
_LAST_SEGMENT = (r"(?i:[a-z0-9]*(?:secret|password|passwd|passphrase|token)|credentials?|pwd|"
                 r"(?:[a-z0-9]*(?:api|access|secret|private|auth|signing|encryption|master|license|pass|client))?key)")
_NAME = r"(?<![A-Za-z0-9_.-])(?P<name>(?:[A-Za-z0-9]+[_.-])*" + _LAST_SEGMENT + r")(?![A-Za-z0-9])"
_VALUE = r"(?P<value>[^\s\"'`,;&<>{}()\[\]|\\]{6,})"

_PATTERNS: list[tuple[str, str]] = [
    ("private_key", r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----(?:.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----"
                    r"|(?:[ \t]*(?:\r?\n|\\n)?[ \t]*[A-Za-z0-9+/=]{16,})+)"),
    ("anthropic_key", r"(?<![A-Za-z0-9_-])sk-ant-(?:api|admin|oat)\d\d-" + _K + r"{20,}"),
    ("openai_key", r"(?<![A-Za-z0-9_-])sk-(?:(?:proj|svcacct|admin|None)-)?(?=" + _K + r"*\d)(?=" + _K +
                   r"*[A-Za-z])" + _K + r"{20,}"),
    ("aws_access_key", r"(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Za-z0-9])"),
    ("github_token", r"(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})"),
    ("gitlab_token", r"(?<![A-Za-z0-9_-])glpat-[A-Za-z0-9_-]{20,}"),
    ("slack_token", r"(?<![A-Za-z0-9_-])xox[abposr]-[0-9]+-[A-Za-z0-9-]{8,}"),
    ("google_api_key", r"(?<![A-Za-z0-9_-])AIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-])"),
    ("jwt", r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    ("secret_assignment", _NAME + r"(?P<nq>[\"']?)(?P<sep>[ \t]*[=:][ \t]*)(?P<q>[\"']?)" + _VALUE),
]
_PII_PATTERNS: list[tuple[str, str]] = [
    ("email", r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![A-Za-z])"),
    ("phone", r"(?<![\w+])(?:\+\d{1,3}[ -]?)?(?:\(\d{1,4}\)[ -]?)?\d{2,4}(?:[ -]\d{2,4}){1,4}(?![\w])"),
]

#: words that mean a placeholder, not a value.
_PLACEHOLDERS = frozenset(("null", "none", "true", "false", "undefined", "required", "optional", "string",
                           "redacted", "changeme", "example", "xxxxxx", "******", "password", "secret", "token"))
#: `NAME: value` (colon) needs a name that is more than a bare common word.
_BARE_COLON = frozenset(("key", "token", "pass", "credential", "credentials"))
_SECRET_KEY_RE = re.compile(r"^(?:[A-Za-z0-9]+[_.-])*" + _LAST_SEGMENT + r"$")
#: names that look like secrets but are not: the shell's working directories; a bare `key`
#: (a JSON `{"key": …}` is a lookup far more often than a credential).
_NOT_SECRET_NAMES = frozenset(("pwd", "oldpwd", "key"))
#: memo limits: strings longer than this are not memoised; the memo is cleared past this many characters.
_MEMO_MAX_STRING = 1 << 16
_MEMO_MAX_CHARS = 1 << 24
#: sessions whose last clean example :meth:`Redactor.example` remembers at once.
_OPEN_SESSIONS = 64
#: clean tools lists remembered (agents offer the same few on every call).
_CLEAN_TOOLS = 8


def _compile(patterns: list[tuple[str, str]]) -> re.Pattern:
    return re.compile("|".join(f"(?P<{kind}>{p})" for kind, p in patterns), re.DOTALL)


_SECRETS_RE = _compile(_PATTERNS)
_ALL_RE = _compile(_PATTERNS + _PII_PATTERNS)
_ASSIGN_GROUPS = ("name", "nq", "sep", "q", "value")


def placeholder(kind: str) -> str:
    return f"[REDACTED:{kind}]"


def _is_placeholder(value: str) -> bool:
    v = value.strip("\"'")
    if not v or v[0] in "$%*<{#" or v.isdigit() or v.lower() in _PLACEHOLDERS:
        return True
    if v.startswith("[REDACTED") or set(v) <= {"x", "X", "*", ".", "-", "_"}:
        return True
    return False


class Redactor:
    """Scrubs strings and examples; counts what it replaced, by kind, and the examples touched."""

    def __init__(self, pii: bool = False):
        self.pii = pii
        self.pattern = _ALL_RE if pii else _SECRETS_RE
        self.counts: Counter = Counter()
        self.examples = 0
        self._memos: tuple[dict, dict] = ({}, {})  # text, tool arguments: string → (new, finds) | None
        self._memo_chars = 0
        self._found: Counter = Counter()
        self._touched = False
        self._sessions: dict[Any, tuple[list, Any]] = {}  # session → (last clean example's inputs, tools)
        self._clean_tools: list = []  # tools lists found clean lately

    # ----------------------------------------------------------------- strings

    def _replace(self, match: re.Match) -> str:
        kind = match.lastgroup
        text = match.group(0)
        if kind == "secret_assignment":
            name, value = match.group("name"), match.group("value")
            if _is_placeholder(value) or name.lower() in ("pwd", "oldpwd"):
                return text
            if ":" in match.group("sep") and not match.group("nq") and name.lower() in _BARE_COLON:
                return text  # prose: "the key: remember it"
            out = text[:match.start("value") - match.start()] + placeholder(kind)
        elif kind == "phone":
            if not 9 <= sum(c.isdigit() for c in text) <= 15:
                return text
            out = placeholder(kind)
        else:
            out = placeholder(kind)
        self._found[kind] += 1  # type: ignore[index]
        return out

    def _scan_text(self, text: str) -> str:
        return self.pattern.sub(self._replace, text)

    def _scan_arguments(self, args: str) -> str:
        """JSON arguments are walked (values under secret-named keys too), re-serialized only when
        something was replaced; other text is scrubbed as text."""
        if not self.pattern.search(args) and not _SECRET_KEY_HINT.search(args):
            return args
        head = args.lstrip()[:1]
        if head in ("{", "["):
            from synth_cli._json import dumps, loads

            try:
                data = loads(args)
            except ValueError:
                data = None
            if data is not None:
                before = sum(self._found.values())
                walked = self._walk(data, None)
                return dumps(walked) if sum(self._found.values()) != before else args
        return self._scan_text(args)

    def _walk(self, value: Any, key: str | None) -> Any:
        if isinstance(value, str):
            new = self._scan_text(value)
            if new is value and key is not None and len(value) >= 6 and key.lower() not in _NOT_SECRET_NAMES \
                    and _SECRET_KEY_RE.search(key) and not _is_placeholder(value):
                self._found["secret_assignment"] += 1
                return placeholder("secret_assignment")
            return new
        if isinstance(value, dict):
            return {(self._scan_text(k) if isinstance(k, str) else k): self._walk(v, k if isinstance(k, str) else None)
                    for k, v in value.items()}
        if isinstance(value, list):
            return [self._walk(v, None) for v in value]
        return value

    def _cached(self, kind: int, text: str) -> str:
        memo = self._memos[kind]
        hit = memo.get(text, False)
        if hit is None:
            return text
        if hit is False:
            self._found = Counter()
            new = self._scan_arguments(text) if kind else self._scan_text(text)
            found = tuple(self._found.items())
            self._remember(memo, text, (new, found) if found else None)
            if not found:
                return text
        else:
            new, found = hit  # type: ignore[misc]
        counts = self.counts
        for k, n in found:
            counts[k] += n
        self._touched = True
        return new

    def _remember(self, memo: dict, text: str, value: Any) -> None:
        if len(text) <= _MEMO_MAX_STRING:
            if self._memo_chars > _MEMO_MAX_CHARS:
                for m in self._memos:
                    m.clear()
                self._memo_chars = 0
            memo[text] = value
            self._memo_chars += len(text)

    def _clean(self, messages: list, tools: Any) -> bool:
        """True when no string of `messages` (and `tools`) can hold a secret: one cheap check.

        Every pattern needs one of a few literals (`sk-`, `AKIA`, `-----BEGIN`…, or, lower-cased,
        `secret`, `token`, `key`…): the strings are joined and searched for them once; only
        when one is there does each string get the full scan.
        """
        pending: list[str] = []
        add = pending.append
        for m in messages:
            content = m.get("content")
            if type(content) is str:
                add(content)
                if len(m) == 2:
                    continue
            elif type(content) is list:
                _strings(content, pending)
            for key, value in m.items():
                if key == "name" and type(value) is str:
                    add(value)
                elif key == "tool_calls" and type(value) is list:
                    for call in value:
                        fn = call.get("function") if type(call) is dict else None
                        if type(fn) is dict and len(call) == 3 and len(fn) == 2 \
                                and type(fn.get("name")) is str and type(fn.get("arguments")) is str:
                            add(fn["name"])
                            add(fn["arguments"])
                        else:
                            _strings(call, pending)
                elif key == "function_call":
                    _strings(value, pending)
        if tools:
            _strings(tools, pending)
        joined = "\n".join(pending)
        if _LITERALS.search(joined) or (self.pii and ("@" in joined or _DIGITS.search(joined))):
            return False
        return True

    def clean(self, messages: Any, tools: Any = None) -> bool:
        """True when no string of `messages` (and `tools`) can hold what this redactor replaces
        (one cheap search; False says only that one may)."""
        return self._clean(messages, tools)

    def text(self, text: str) -> str:
        """`text` with its secrets replaced (counted in :attr:`counts`)."""
        return self._cached(0, text)

    def arguments(self, args: str) -> str:
        """Tool-call arguments with their secrets replaced; JSON stays the same JSON."""
        return self._cached(1, args)

    def value(self, value: Any) -> Any:
        """A JSON value (e.g. the tools offered) with every string scrubbed."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v) for v in value]
        return value

    # ----------------------------------------------------------------- examples

    def example(self, example: dict, session: Any = None) -> bool:
        """Scrub one example in place (messages, tools); True when something was replaced.

        `session` (any hashable, e.g. the session id): agents resend their whole history on
        every call, so when this example begins with the previous clean example of the same
        session (its messages but the last), those messages are known clean and skipped.
        """
        self._touched = False
        messages = example["messages"]
        tools = example.get("tools")
        start = 0
        tools_clean = not tools
        state = self._sessions.get(session) if session is not None else None
        if state is not None:
            prev, prev_tools = state
            n = len(prev)
            if n < len(messages) and messages[:n] == prev:  # one C-level comparison
                start = n
            if tools and tools == prev_tools:
                tools_clean = True
        if not tools_clean and tools in self._clean_tools:
            tools_clean = True
        todo = messages[start:] if start else messages
        if self._clean(todo, None if tools_clean else tools):
            if tools and not tools_clean:
                if len(self._clean_tools) >= _CLEAN_TOOLS:
                    self._clean_tools.pop(0)
                self._clean_tools.append(tools)
            self._keep(session, messages, tools)
            return False
        for m in todo:
            self._scrub(m)
        if not tools_clean:
            example["tools"] = self.value(tools)
        if self._touched:
            self._sessions.pop(session, None)
            self.examples += 1
        else:
            self._keep(session, messages, tools)
        return self._touched

    def _scrub(self, m: dict) -> None:
        """Scrub one message in place: its content (text parts), name, tool calls, function call."""
        text = self.text
        content = m.get("content")
        if type(content) is str:
            if content:
                new = text(content)
                if new is not content:
                    m["content"] = new
        elif type(content) is list:
            for part in content:  # image parts are never looked at
                if type(part) is dict and part.get("type") == "text" and isinstance(part.get("text"), str):
                    new = text(part["text"])
                    if new is not part["text"]:
                        part["text"] = new
        if len(m) == 2:
            return
        name = m.get("name")
        if isinstance(name, str) and name:
            m["name"] = text(name)
        calls = m.get("tool_calls")
        if calls:
            m["tool_calls"] = [self._call(c) for c in calls]  # new dicts: the originals may be shared
        fc = m.get("function_call")
        if isinstance(fc, dict):
            m["function_call"] = self._function(fc)

    def message(self, m: dict) -> tuple[dict, tuple]:
        """One message scrubbed, without counting it: (`m`, or a scrubbed copy, and what was found in it as
        (kind, count) pairs, () when nothing). `m` itself is never changed.

        What :meth:`example` finds in an example is what this finds in its messages and
        :meth:`found_in_tools` in its tools, added up: each string is scrubbed on its own, so
        :mod:`synth_cli.dataset.history` scrubs each history message of a session once and
        counts it with every example that holds it (:meth:`count`).
        """
        if self._clean((m,), None):
            return m, ()
        copy = dict(m)
        content = copy.get("content")
        if type(content) is list:  # text parts are scrubbed in place: copy them
            copy["content"] = [dict(p) if type(p) is dict else p for p in content]
        saved, self.counts = self.counts, Counter()
        try:
            self._scrub(copy)
            found = tuple(self.counts.items())
        finally:
            self.counts = saved
        return (copy, found) if found else (m, ())

    def found_in_tools(self, tools: Any) -> tuple[Any, tuple]:
        """The tools offered, scrubbed, without counting them: (tools or a scrubbed copy, (kind, count) pairs)."""
        if not tools or self._clean((), tools):
            return tools, ()
        saved, self.counts = self.counts, Counter()
        try:
            new = self.value(tools)
            found = tuple(self.counts.items())
        finally:
            self.counts = saved
        return (new, found) if found else (tools, ())

    def count(self, found: Any) -> None:
        """One example (scrubbed through :meth:`message` / :meth:`found_in_tools`) held `found`
        ((kind, count) pairs, or a mapping): counted as :meth:`example` counts what it replaces."""
        if found:
            counts = self.counts
            for kind, n in (found.items() if hasattr(found, "items") else found):
                counts[kind] += n
            self.examples += 1

    def _keep(self, session: Any, messages: list, tools: Any) -> None:
        """Remember a clean example's inputs (all messages but the last) for the session's next one."""
        if session is None:
            return
        sessions = self._sessions
        if len(sessions) >= _OPEN_SESSIONS and session not in sessions:
            sessions.clear()
        sessions[session] = (messages[:-1], tools)

    def forget(self, session: Any) -> None:
        """The session is over: drop what :meth:`example` remembers of it."""
        self._sessions.pop(session, None)

    def _function(self, fn: dict) -> dict:
        out = dict(fn)
        if isinstance(out.get("name"), str):
            out["name"] = self.text(out["name"])
        if isinstance(out.get("arguments"), str):
            out["arguments"] = self.arguments(out["arguments"])
        if isinstance(out.get("input"), str):  # a custom tool's input
            out["input"] = self.arguments(out["input"])
        return out

    def _call(self, call: Any) -> Any:
        if not isinstance(call, dict):
            return call
        out = dict(call)
        for key, fn in call.items():
            if key != "id" and isinstance(fn, dict):
                out[key] = self._function(fn)
        return out

    def summary(self) -> dict[str, Any]:
        return {"mode": "secrets+pii" if self.pii else "secrets", "examples": self.examples,
                "by_kind": dict(sorted(self.counts.items()))}


def _strings(value: Any, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            if isinstance(k, str):
                out.append(k)
            _strings(v, out)
    elif isinstance(value, list):
        for v in value:
            _strings(v, out)


#: a necessary condition of every secret pattern, as one search (a leading character set, so
#: the regex engine skips most positions): `sk-` (k-), `AKIA`/`ASIA`/`ABIA`/`ACCA`, `gh?_`,
#: `github_pat`, `glpat`, `xox`, `AIza`, `eyJ` (yJ), `BEGIN`, and the names of assignments in
#: any case: `…key`, `token` (ken), `pwd`, `pass…`, `credential` (cred), `secret` (cret).
_LITERALS = re.compile(r"k(?:-|[eE][nNyY])|K(?:IA|[eE][nNyY])|S(?:IA)|B(?:IA|EGIN)|C(?:CA|[Rr][Ee][DdTt])"
                       r"|g(?:h[pousr]_|ithub_pat|lpat)|xox|AIza|yJ|P(?:[Ww][Dd]|[Aa][Ss][Ss])|p(?:[Ww][Dd]|[Aa][Ss][Ss])"
                       r"|c(?:[Rr][Ee][DdTt])")
_DIGITS = re.compile(r"\d{2,4}[ -]\d{2,4}")

#: a JSON key that may name a secret (cheap pre-check before parsing tool arguments).
_SECRET_KEY_HINT = re.compile(r"(?i)(?:secret|passw|pwd|token|key|credential)[A-Za-z0-9_.-]*\"\s*:")


def redact_text(text: str, pii: bool = False) -> tuple[str, dict[str, int]]:
    """Convenience: (scrubbed text, counts by kind)."""
    r = Redactor(pii=pii)
    return r.text(text), dict(r.counts)


__all__ = ["PII_KINDS", "SECRET_KINDS", "Redactor", "placeholder", "redact_text"]
