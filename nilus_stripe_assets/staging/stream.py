"""Staging while the fetch runs: each closed spool file becomes typed Parquet as pages still arrive.

A first load used to stage its whole spool after the last page (1M charges: ~9 s of CPU after a ~41 s
fetch), while the fetch itself mostly waits on Stripe's rate limit. Here the spool closes each thread's file
every `ROTATE_OBJECTS` objects (`Spool.hand_on`), and one thread per load stages it at once: the same
typed read, hash and bookkeeping as `parquet.stage`, one Parquet file per spool file. At the end (`finish`)
only what is left is done, and the warehouse is not touched until `apply`, as before.

The result is exactly what staging the whole spool at once gives:
- Types: a piece is typed from its own objects' JSON kinds; the batch's types come from all of them (as
  `stage` types the whole spool). A piece whose columns or types differ from the batch's (a field first
  seen later, an integer field that turns out to hold decimals) is staged again from its spool file with
  the batch's types. Where the recorded kinds did not foresee a value (an integer beyond 64 bits), the
  whole spool goes through `stage`, which lets DuckDB probe.
- One row per key: keys repeated anywhere in the batch (across pieces too) are found over the narrow key
  column of all pieces; only the pieces holding a row to drop are rewritten without it.
- The content hash is the spool's, as before.
Whatever else fails while staging a piece (DuckDB out of memory under its cap, a full disk), the batch is
staged at once from the spool, as before, and fails or succeeds as it would have.
"""

from __future__ import annotations

import os
import queue
import shutil
import tempfile
import threading
from dataclasses import dataclass
from typing import Iterable, Mapping, Optional, Sequence, Union

import duckdb

from .columns import Column
from .parquet import (
    PARQUET_OPTIONS, SLOTS, StagedBatch, column_types, content_types, key_columns, limit_resources, quote,
    read_typed, sql_strings, typed_view,
)
from .spool import SpooledFile

# Objects per spool file before it is closed and staged. Smaller pieces leave less to stage after the last
# page (every writing thread's open file is staged then: at most 8 x 8,192 charges with the async split's 8
# workers); each piece costs a DuckDB connection (~15 ms, closed between pieces so the fetch does not keep
# its memory) and ~10 ms more of staging. A Stripe page holds at most 100 objects, so a file closed at
# 8,092 or more holds at most 8,191: one row group of the staged Parquet (8,192), never a second tiny one.
ROTATE_OBJECTS = 8_192 - 100


@dataclass
class _Piece:
    source: SpooledFile
    path: str
    types: dict[str, Optional[str]]  # every field staged, with its type (as `column_types` gives them)


class StreamedStaging:
    """Stages a spool's closed files on one background thread; `finish` returns the batch's `StagedBatch`,
    or None when the whole spool must be staged at once instead (the caller then calls `stage`)."""

    def __init__(self, directory: str, merge_key: Union[str, Sequence[str]] = "id", state_at: Optional[int] = None,
                 declared: Optional[Mapping[str, Column]] = None):
        self.folder = tempfile.mkdtemp(prefix="stage-", dir=directory)
        self.merge_key, self.state_at, self.declared = merge_key, state_at, dict(declared or {})
        self._queue: queue.Queue = queue.Queue()
        self._pieces: list[_Piece] = []
        self._failed = False
        self._stopped = False
        self._finished = False
        # Why the pieces were not used (None while they are): the batch is then staged at once, as before.
        self.fallback: Optional[str] = None
        self._con: Optional[duckdb.DuckDBPyConnection] = None
        self._spill = os.path.join(self.folder, "spill")
        self._thread: Optional[threading.Thread] = None  # started by the first closed file
        self._start = threading.Lock()

    def add(self, spooled: SpooledFile) -> None:
        """A closed spool file (the spool's `on_file`, called from the writing threads): queued for staging."""
        with self._start:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="stage-while-fetching", daemon=True)
                self._thread.start()
            self._queue.put(spooled)

    def wait(self) -> None:
        """Until every queued file is staged (the thread ends)."""
        with self._start:
            thread, self._thread = self._thread, None
            if thread is not None:
                self._queue.put(None)
        if thread is not None:
            thread.join()

    def close(self) -> None:
        """Stop staging (a failed or cancelled load); the staged files go with the folder."""
        self._stopped = True
        self.wait()
        self._disconnect()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _run(self) -> None:
        while (spooled := self._queue.get()) is not None:
            if self._failed or self._stopped:
                continue
            try:
                with SLOTS:
                    self._pieces.append(self._stage(spooled, spooled.fields, None))
                    if self._queue.empty():
                        # Pages arrive slower than they are staged: give DuckDB's memory back until the next file.
                        self._disconnect()
            except Exception as exc:  # e.g. a value the kinds did not foresee: `finish` stages at once
                self._failed = True
                self.fallback = f"{type(exc).__name__}: {exc}"
                self._disconnect()

    def _connection(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            self._con = duckdb.connect()
            limit_resources(self._con, temp_directory=self._spill)
        return self._con

    def _disconnect(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def _stage(self, spooled: SpooledFile, fields: Sequence[str], types: Optional[dict[str, Optional[str]]],
               path: Optional[str] = None) -> _Piece:
        """One spool file into Parquet, typed from its own kinds (or with `types`): no de-duplication yet."""
        con = self._connection()
        types = types if types is not None else column_types(fields, spooled.kinds, self.declared)
        read_typed(con, [spooled.path], types, self.declared)
        typed_view(con, types, self.merge_key, self.state_at, from_events=False)
        path = path or os.path.join(self.folder, f"piece-{len(self._pieces):05d}.parquet")
        con.execute(f"COPY (SELECT * FROM _typed) TO '{path}' {PARQUET_OPTIONS}")
        return _Piece(spooled, path, types)

    def finish(self, fields: Optional[Sequence[str]], kinds: Optional[Mapping[str, Iterable[str]]]) -> Optional[StagedBatch]:
        """The batch staged from its pieces, typed and de-duplicated as `stage` does it for the whole spool
        (whose `fields` and `kinds` the spool's summary gives); None when that is not possible from the
        pieces (`fallback` says why): the caller then stages the spool at once. Once only."""
        self.wait()
        if self._finished:
            self.fallback = self.fallback or "finished before"
            return None
        self._finished = True
        if self._failed or kinds is None:
            self.fallback = self.fallback or "the spool recorded no JSON kinds"
            self._drop_pieces()
            return None
        if not self._pieces:
            return StagedBatch((), {}, 0)
        try:
            types = column_types(fields, kinds, self.declared)
            for piece in self._pieces:
                if list(piece.types.items()) != list(types.items()):
                    # Typed apart from the rest (a field first seen later, a type widened later): again, with
                    # the batch's types, from the same spool file.
                    retyped = self._stage(piece.source, fields, types, piece.path + ".retyped")
                    os.replace(retyped.path, piece.path)
                    piece.types = types
            rows = self._deduplicate()
        except Exception as exc:  # whatever it is, staging the spool at once meets it too, or succeeds
            self.fallback = f"{type(exc).__name__}: {exc}"
            self._drop_pieces()
            return None
        finally:
            self._disconnect()
        return StagedBatch(tuple(p.path for p in self._pieces), content_types(types), rows)

    def _drop_pieces(self) -> None:
        for piece in self._pieces:
            for path in (piece.path, piece.path + ".retyped", piece.path + ".unique"):
                if os.path.exists(path):
                    os.remove(path)
        self._pieces = []

    def _deduplicate(self) -> int:
        """One row per key across all pieces; returns the batch's rows. Only pieces that hold a row to drop
        are rewritten."""
        con = self._connection()
        key = ", ".join(quote(c) for c in key_columns(self.merge_key))
        paths = sql_strings([p.path for p in self._pieces])
        total = con.execute(f"SELECT count(*) FROM read_parquet({paths})").fetchone()[0]
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE _repeated AS SELECT {key} FROM read_parquet({paths}) "
            f"GROUP BY {key} HAVING count(*) > 1"
        )
        if not con.execute("SELECT count(*) FROM _repeated").fetchone()[0]:
            return int(total)
        # Rows are addressed by piece and row number (`_piece` and `file_row_number`, beside the columns).
        # List reads of one load share `_state_at`: as in `stage`, any one of a key's rows is kept.
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE _dropped AS SELECT _piece, file_row_number FROM "
            f"read_parquet({paths}, filename='_piece', file_row_number=true) SEMI JOIN _repeated USING ({key}) "
            f"QUALIFY row_number() OVER (PARTITION BY {key}) > 1"
        )
        for (piece,) in con.execute("SELECT DISTINCT _piece FROM _dropped").fetchall():
            unique = piece + ".unique"
            con.execute(
                f"COPY (SELECT * EXCLUDE (file_row_number) FROM read_parquet('{piece}', file_row_number=true) "
                f"WHERE file_row_number NOT IN (SELECT file_row_number FROM _dropped WHERE _piece = '{piece}')) "
                f"TO '{unique}' {PARQUET_OPTIONS}"
            )
            os.replace(unique, piece)
        dropped = con.execute("SELECT count(*) FROM _dropped").fetchone()[0]
        return int(total - dropped)
