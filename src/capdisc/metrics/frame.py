"""Per-request records as a typed pandas DataFrame: read ``requests.csv`` or wrap rows in memory.

Every figure capdisc reports is computed from this frame, never from Locust's
statistics. The reader is forgiving in the one way a crash requires (a half-written
last line is dropped) and strict about the columns (a file that is not a
``requests.csv`` is a :class:`~capdisc.errors.RunFailed`).

Column types: ``ts_*`` and the ``*_ms`` figures are ``float64`` (a missing one is
NaN); ``user``, ``step``, ``status`` and ``ok`` are ``int64``; the counts (tokens,
chunks, tool calls, reconnects) are nullable ``Int64``; ``version``, ``name`` and
``error`` are strings (empty, never missing). A ``requests.csv`` written before some
columns existed reads with them missing (its ``ttft_ms`` was the first byte: it
becomes ``ttfb_ms`` too).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from capdisc.errors import RunFailed
from capdisc.records import (
    CLIENT_COLUMNS,
    LATER_COLUMNS,
    RECORD_COLUMNS,
    STOPPED_IN_FLIGHT,
    RequestRecord,
    is_round,
)

__all__ = [
    "CLIENT_SAMPLE_COLUMNS",
    "answered",
    "client_frame",
    "cut_mask",
    "frame_records",
    "read_client",
    "read_records",
    "records_frame",
    "rounds",
    "tasks",
]

_FLOAT_COLUMNS = (
    "ts_scheduled",
    "ts_start",
    "ts_end",
    "duration_ms",
    "connect_ms",
    "ttfb_ms",
    "ttft_ms",
    "tpot_ms",
    "itl_mean_ms",
    "itl_max_ms",
)
_INT_COLUMNS = ("user", "step", "status", "ok")
_NULLABLE_INT_COLUMNS = (
    "output_tokens",
    "input_tokens",
    "tokens_estimated",
    "chunks",
    "tool_calls",
    "reconnects",
)
_STR_COLUMNS = ("version", "name", "error")
# A row without these is not a measurement (a line cut by a crash): it is dropped.
_REQUIRED = ("ts_scheduled", "ts_start", "ts_end", "user", "step", "status", "ok", "duration_ms")


def read_records(path: Path | str) -> pd.DataFrame:
    """Read ``requests.csv`` into the typed records frame.

    A last line without its newline was being written when the process died and is
    dropped; a file holding only the header (or nothing at all) gives an empty frame.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RunFailed(f"{path}: cannot read the request records ({exc.strerror})") from exc
    # The writer ends every row with a newline, so anything after the last one is a
    # partial row (possibly a number cut short, which would still parse): drop it.
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n")
        data = data[: cut + 1] if cut >= 0 else b""
    if not data.strip():
        return _empty()
    try:
        # Text columns stay text ("" for no error, never NaN); numbers are parsed by the C
        # reader, with an empty field as missing. A malformed number leaves its column
        # as text, which _typed coerces (that row is then dropped or left empty).
        raw = pd.read_csv(
            io.BytesIO(data),
            dtype=dict.fromkeys(_STR_COLUMNS, str),
            keep_default_na=False,
            na_values={c: [""] for c in _FLOAT_COLUMNS + _INT_COLUMNS + _NULLABLE_INT_COLUMNS},
            on_bad_lines="skip",
            encoding="utf-8",
            encoding_errors="replace",
        )
    except pd.errors.ParserError:
        # Only an unterminated quoted field (an error text cut mid-line) gets here.
        # The csv module reads it to the end of the file: the cut row then has too
        # few fields and is dropped, unless the cut field was the last column
        # (``error``), whose loss of a few characters costs no figure.
        raw = _read_with_csv_module(data)
    except pd.errors.EmptyDataError:
        return _empty()
    if "ttfb_ms" not in raw.columns and "ttft_ms" in raw.columns:
        # Before token figures, ttft_ms held the time to the first byte of the body.
        raw["ttfb_ms"] = raw["ttft_ms"]
    for column in LATER_COLUMNS:
        if column not in raw.columns:
            raw[column] = pd.NA  # an older requests.csv
    missing = [c for c in RECORD_COLUMNS if c not in raw.columns]
    if missing:
        raise RunFailed(f"{path}: not a requests.csv, missing column(s) {', '.join(missing)}")
    return _typed(raw[list(RECORD_COLUMNS)])


# The columns of ``client.csv`` that the report draws (one row per load process and second).
# What the pages draw of client.csv (the lags list itself stays in the file).
CLIENT_SAMPLE_COLUMNS = CLIENT_COLUMNS[:5]


def read_client(path: Path | str) -> pd.DataFrame | None:
    """``client.csv`` (capdisc's own CPU and loop lag per process and second) as a frame.

    None when the run has no such file (runs before the client checks) or it is not one;
    a half-written last line is dropped like in :func:`read_records`.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if data and not data.endswith(b"\n"):
        data = data[: data.rfind(b"\n") + 1]
    try:
        raw = pd.read_csv(io.BytesIO(data), dtype={"process": str}, on_bad_lines="skip")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        return None
    if any(c not in raw.columns for c in CLIENT_SAMPLE_COLUMNS):
        return None
    frame = raw[list(CLIENT_SAMPLE_COLUMNS)].copy()
    for column in ("ts", "cpu", "lag_p95_ms", "lag_max_ms"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    frame["process"] = frame["process"].fillna("").astype(str)
    return frame.dropna(subset=["ts", "cpu"]).reset_index(drop=True)


def client_frame(rows: Sequence[Sequence[object]]) -> pd.DataFrame | None:
    """The rows of ``client.csv`` a run kept in memory (``CLIENT_COLUMNS``) as the frame
    :func:`read_client` gives; None without a sample."""
    if not rows:
        return None
    frame = pd.DataFrame([list(r) for r in rows], columns=list(CLIENT_COLUMNS))
    return frame[list(CLIENT_SAMPLE_COLUMNS)]


def records_frame(rows: Sequence[RequestRecord]) -> pd.DataFrame:
    """Build the typed records frame from in-memory rows in ``RECORD_COLUMNS`` order."""
    if not rows:
        return _empty()
    # Plain tuples of the first release's columns get the later ones as missing.
    records = [r if isinstance(r, RequestRecord) else RequestRecord(*r) for r in rows]
    raw = pd.DataFrame(records, columns=list(RECORD_COLUMNS), dtype=object)
    return _typed(raw)


def frame_records(df: pd.DataFrame) -> list[RequestRecord]:
    """The rows of a records frame as :class:`RequestRecord` again (missing figures ``""``),
    for the record writer: a saved run's rows are written as the engine writes its own."""
    columns = df[list(RECORD_COLUMNS)].astype(object)
    plain = columns.where(columns.notna(), "")
    return [RequestRecord(*(_plain(v) for v in row)) for row in plain.itertuples(index=False)]


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python number it holds (the csv module writes those as-is)."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def tasks(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of whole tasks (what steps, pacing and capacity count)."""
    return df[~_round_mask(df)]


def answered(df: pd.DataFrame, version: str | None = None) -> pd.DataFrame:
    """The tasks the target answered (of ``version``): not those capdisc's stop cut."""
    rows = tasks(df)
    if version is not None:
        rows = rows[rows["version"] == version]
    return rows[~cut_mask(rows)]


def cut_mask(df: pd.DataFrame) -> pd.Series:
    """Rows of requests cut in flight by capdisc's own stop (not answers of the target)."""
    return df["error"] == STOPPED_IN_FLIGHT


def rounds(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of single tool rounds ("round 1" .. "round N+1")."""
    return df[_round_mask(df)]


def _round_mask(df: pd.DataFrame) -> pd.Series:
    # is_round is the single definition; evaluate it once per distinct name.
    names = df["name"]
    lookup = {name: is_round(str(name)) for name in names.unique()}
    return names.map(lookup).astype(bool)


def _empty() -> pd.DataFrame:
    return _typed(pd.DataFrame({c: pd.Series([], dtype=object) for c in RECORD_COLUMNS}))


def _read_with_csv_module(data: bytes) -> pd.DataFrame:
    text = data.decode("utf-8", errors="replace")
    reader = csv.reader(io.StringIO(text, newline=""), strict=False)
    header: list[str] = []
    body: list[list[str]] = []
    try:
        for row in reader:
            if not header:
                header = row
            elif len(row) == len(header):
                body.append(row)
    except csv.Error:
        pass  # a malformed tail: everything before it is kept
    return pd.DataFrame(body, columns=header or list(RECORD_COLUMNS), dtype=object)


def _typed(raw: pd.DataFrame) -> pd.DataFrame:
    out: dict[str, pd.Series] = {}
    for col in RECORD_COLUMNS:
        series = raw[col]
        if col in _STR_COLUMNS:
            out[col] = series.fillna("").astype(str)
        else:
            out[col] = pd.to_numeric(series, errors="coerce").astype("float64")
    frame = pd.DataFrame(out)
    frame = frame.dropna(subset=list(_REQUIRED))
    for col in _INT_COLUMNS:
        frame[col] = frame[col].astype("int64")
    for col in _NULLABLE_INT_COLUMNS:
        frame[col] = frame[col].round().astype("Int64")
    return frame.reset_index(drop=True)
