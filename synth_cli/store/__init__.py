"""The only package that knows trace-DB files, their schema and SQL (reading and writing).

* :mod:`.locate`: targets (paths, sqld directories, `sqlite:///` and libSQL URLs), the SQLite
  header check, SQLite error mapping, credential stripping, DB discovery;
* :mod:`.reader`: `TraceStore` (a SQLite file read-only, or a libSQL server) and `open_stores`;
* :mod:`.schema`: the `tracing_v3` schema and its append-only migrations;
* :mod:`.sql`: the one definition of each figure (session cost, tokens, LLM calls, malformed
  records) as SQL fragments, shared by the reports and `filter`;
* :mod:`.inventory`, :mod:`.experiments`, :mod:`.usage`, :mod:`.sessions`: the reports;
* :mod:`.selection`: the session filters and streamed scans behind `filter`.

Nothing here prints. Submodules are imported directly; this `__init__` stays empty so that
importing the package costs nothing at start-up.
"""
