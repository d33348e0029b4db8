"""The floor `filter` is measured against: the least work that turns call records into JSONL.

One SQL pass over `events.call_records` (the `cais` events, in id order), each blob
parsed with orjson, one compact JSON line written per call record. No selection, no
conversion, no validation: any real filter does at least this.

    python bench/floor.py DB OUT.jsonl
"""

from __future__ import annotations

import sqlite3
import sys
from urllib.parse import quote

import orjson


def main(db: str, out: str) -> int:
    conn = sqlite3.connect(f"file:{quote(db)}?mode=ro", uri=True)
    n = 0
    with open(out, "wb", buffering=1 << 20) as fh:
        for (blob,) in conn.execute("SELECT call_records FROM events "
                                    "WHERE event_type = 'cais' AND call_records IS NOT NULL ORDER BY id"):
            for record in orjson.loads(blob):
                fh.write(orjson.dumps(record))
                fh.write(b"\n")
                n += 1
    conn.close()
    sys.stderr.write(f"{n} records\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
