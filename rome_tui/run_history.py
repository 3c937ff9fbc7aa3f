"""A training run's records from metrics.jsonl, sorted into what the dashboard draws."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from rome_core.tokenizer import VOCAB_SIZE

METRICS_FILE = "metrics.jsonl"


def number(value) -> float | None:
    """Return `value` as a finite float, or None for null, NaN, infinity and non-numbers."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def find_metrics(folder: Path) -> Path:
    """Return the metrics.jsonl of a run folder, or of the run that holds a checkpoint folder."""
    folder = Path(folder)
    if folder.is_file():
        return folder
    for candidate in (folder / METRICS_FILE, folder.parent / METRICS_FILE):
        if candidate.is_file():
            return candidate
    return folder / METRICS_FILE


def vocab_size_of(folder: Path, default: int = VOCAB_SIZE) -> int:
    """Read the vocabulary size from a run's or checkpoint's config.json (the chart's ln(vocab) line)."""
    for candidate in (folder / "config.json", folder / "latest" / "config.json", folder / "best" / "config.json"):
        try:
            value = json.loads(candidate.read_text(encoding="utf-8")).get("vocab_size")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(value, int) and value > 1:
            return value
    return default


@dataclass
class RunHistory:
    """Loss points and the latest numbers of one run. Null or NaN losses are counted, not plotted."""

    train_steps: list[float] = field(default_factory=list)
    train_losses: list[float] = field(default_factory=list)
    val_steps: list[float] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)
    resumes: list[float] = field(default_factory=list)
    skipped: int = 0
    records: int = 0
    step: int | None = None
    tokens: int | None = None
    tokens_per_s: float | None = None
    lr: float | None = None
    total_steps: int | None = None
    elapsed_s: float | None = None
    sample: str | None = None
    probe_prompt: str | None = None
    probe: list[tuple[str, float]] = field(default_factory=list)
    ended: bool = False
    vocab_size: int | None = None  # from the start record; older runs have it only in config.json

    def add(self, record: dict) -> None:
        self.records += 1
        event = record.get("event")
        step = number(record.get("step"))
        if step is not None:
            self.step = int(step)
        for name in ("tokens", "total_steps"):
            value = number(record.get(name))
            if value is not None:
                setattr(self, name, int(value))
        elapsed = number(record.get("elapsed_s"))
        if elapsed is not None:
            self.elapsed_s = elapsed
        if event in ("start", "resume"):
            self.ended = False
            vocab_size = number(record.get("vocab_size"))
            if vocab_size is not None and vocab_size > 1:
                self.vocab_size = int(vocab_size)
            if event == "resume" and step is not None:
                self.resumes.append(step)
        elif event == "train":
            self.tokens_per_s = number(record.get("tokens_per_s")) or self.tokens_per_s
            self.lr = number(record.get("lr")) if "lr" in record else self.lr
            self._add_point(step, record.get("train_loss"), self.train_steps, self.train_losses)
        elif event == "eval":
            self._add_point(step, record.get("val_loss"), self.val_steps, self.val_losses)
            if isinstance(record.get("sample"), str):
                self.sample = record["sample"]
            if isinstance(record.get("probe_prompt"), str):
                self.probe_prompt = record["probe_prompt"]
            probe = record.get("probe")
            if isinstance(probe, list):
                self.probe = [
                    (str(item.get("token", "?")), number(item.get("prob")) or 0.0) for item in probe if isinstance(item, dict)
                ]
        elif event == "end":
            self.ended = True

    def _add_point(self, step: float | None, loss, steps: list[float], losses: list[float]) -> None:
        value = number(loss)
        if step is None or value is None:
            self.skipped += 1
            return
        steps.append(step)
        losses.append(value)

    @property
    def eta_s(self) -> float | None:
        """Seconds left, from the steps left and the average step rate so far; None when unknown."""
        if self.ended or not self.total_steps or not self.step or not self.elapsed_s:
            return None
        rate = self.step / self.elapsed_s
        return max(0.0, (self.total_steps - self.step) / rate) if rate > 0 else None
