"""Pages leave memory as they arrive: objects are appended to NDJSON files on disk.

DuckDB reads the files at the end in one short write transaction (`read_json`), so memory stays flat
however many objects a load has, and the single-writer file lock is held only for the final write.
NDJSON keeps Stripe's objects exactly as sent (unknown fields, nulls, nested objects) for DuckDB to type.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import orjson


@dataclass
class SpoolSummary:
    files: list[str]
    objects: int
    min_created: Optional[int]
    max_created: Optional[int]
    fields: list[str]  # top-level field names in first-seen order, so DuckDB need not scan to find them


class Spool:
    """Thread-safe NDJSON sink; one file per writing thread so threads never wait on each other."""

    def __init__(self, directory: Optional[str] = None, prefix: str = "stripe-"):
        self.path = Path(tempfile.mkdtemp(prefix=prefix, dir=directory))
        self._local = threading.local()
        self._files: list = []
        self._lock = threading.Lock()
        self.objects = 0
        self.min_created: Optional[int] = None
        self.max_created: Optional[int] = None
        self._fields: dict[str, None] = {}

    def _file(self):
        handle = getattr(self._local, "handle", None)
        if handle is None:
            with self._lock:
                handle = open(self.path / f"part-{len(self._files):04d}.ndjson", "wb", buffering=1 << 20)
                self._files.append(handle)
            self._local.handle = handle
        return handle

    def write(self, objects: Sequence[dict]) -> int:
        lines = [orjson.dumps(obj) for obj in objects]
        if not lines:
            return 0
        handle = self._file()
        handle.write(b"\n".join(lines) + b"\n")
        created = [obj.get("created") for obj in objects if isinstance(obj.get("created"), int)]
        fields: dict[str, None] = {}
        for obj in objects:
            fields.update(dict.fromkeys(obj))
        with self._lock:
            self._fields.update(fields)
            self.objects += len(lines)
            if created:
                lo, hi = min(created), max(created)
                self.min_created = lo if self.min_created is None else min(self.min_created, lo)
                self.max_created = hi if self.max_created is None else max(self.max_created, hi)
        return len(lines)

    def finish(self) -> SpoolSummary:
        with self._lock:
            for handle in self._files:
                handle.close()
            files = [handle.name for handle in self._files]
        return SpoolSummary(
            files=files, objects=self.objects, min_created=self.min_created, max_created=self.max_created,
            fields=list(self._fields),
        )

    def cleanup(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
