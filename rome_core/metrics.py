"""`metrics.jsonl`: one JSON object per line, written by the trainer and followed by the dashboard."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path


def _clean(value):
    # JSON has no NaN or infinity; write null so every reader can parse the line.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsWriter:
    """Appends records and flushes each one, so another process can follow the file live."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(path, "a", encoding="utf-8")

    def write(self, record: dict) -> None:
        clean = {key: _clean(value) for key, value in record.items()}
        self._handle.write(json.dumps(clean, allow_nan=False) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()


class MetricsReader:
    """Reads complete lines appended since the last call; a partly written last line waits for its newline."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._offset = 0
        self._pending = b""
        self.bad_lines = 0

    def read_new(self) -> list[dict]:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return []
        if size < self._offset:
            # The file was replaced or truncated: start over.
            self._offset, self._pending = 0, b""
        with open(self.path, "rb") as handle:
            handle.seek(self._offset)
            chunk = handle.read()
        self._offset += len(chunk)
        data = self._pending + chunk
        lines = data.split(b"\n")
        self._pending = lines.pop()
        records = []
        for line in lines:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                self.bad_lines += 1
                continue
            if isinstance(record, dict):
                records.append(record)
        return records


def smoothed(values: list[float], weight: float) -> list[float]:
    """Return the exponential moving average of `values` with `weight` on the past (0 returns them as they are).

    The average starts from zero and is divided by 1 - weight**n (bias correction), so the
    first points are not pulled towards zero.
    """
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"invalid smoothing weight {weight}; use a value in [0, 1)")
    if weight == 0.0:
        return list(values)
    average = 0.0
    result = []
    for count, value in enumerate(values, start=1):
        average = weight * average + (1.0 - weight) * value
        result.append(average / (1.0 - weight**count))
    return result
