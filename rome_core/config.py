"""Model configuration and the named presets."""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass
from pathlib import Path

from rome_core.errors import RomeError


def check_field_types(cls: type, data: dict, source: str) -> None:
    """Raise a RomeError naming the first value in `data` whose JSON type does not fit `cls`'s field.

    JSON gives strings, floats, booleans and null as readily as whole numbers, and a dataclass
    does not check them, so "steps": "20" or 10.5 would otherwise fail deep inside training.
    """
    hints = typing.get_type_hints(cls)
    for name, value in data.items():
        expected = hints[name]
        optional = type(None) in typing.get_args(expected)
        base = int if int in (expected, *typing.get_args(expected)) else float
        if value is None and optional:
            continue
        if base is int:
            valid = isinstance(value, int) and not isinstance(value, bool)
            requirement = "a whole number"
        else:
            valid = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            requirement = "a finite number"
        if not valid:
            also = " or null" if optional else ""
            raise RomeError(f"{source}: invalid setting {name}={json.dumps(value)}; use {requirement}{also}")


@dataclass(frozen=True)
class ModelConfig:
    """Shape of a RomeGPT model. Saved as `config.json` beside every checkpoint."""

    vocab_size: int = 3000
    context_length: int = 512
    d_model: int = 512
    n_layers: int = 6
    n_heads: int = 8
    d_mlp: int = 2048
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "context_length", "d_model", "n_layers", "n_heads", "d_mlp"):
            if getattr(self, name) < 1:
                raise RomeError(f"invalid config: {name}={getattr(self, name)} must be at least 1")
        # Token ids are stored as uint16. The other limits keep a typo (a few extra zeros) from
        # reaching the allocator, and they are far above anything this project trains.
        for name, limit in (("vocab_size", 65536), ("context_length", 65536), ("d_model", 65536), ("d_mlp", 262144), ("n_layers", 1024)):
            if getattr(self, name) > limit:
                raise RomeError(f"invalid config: {name}={getattr(self, name)} is above the limit {limit}")
        if self.d_model % self.n_heads != 0:
            raise RomeError(
                f"invalid config: d_model={self.d_model} is not divisible by n_heads={self.n_heads}; "
                "pick a head count that divides the width"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise RomeError(f"invalid config: dropout={self.dropout} must be in [0, 1)")

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RomeError(f"{source}: unknown config keys {unknown}; expected some of {sorted(known)}")
        check_field_types(cls, data, source)
        try:
            return cls(**data)
        except TypeError as error:
            raise RomeError(f"{source}: invalid config ({error})") from None
        except RomeError as error:
            raise RomeError(f"{source}: {error}") from None

    @classmethod
    def load(cls, path: Path) -> "ModelConfig":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RomeError(f"{path}: config file not found") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise RomeError(f"{path}: not valid JSON ({error}); restore it from the checkpoint it came with") from None
        if not isinstance(data, dict):
            raise RomeError(f"{path}: expected a JSON object of model settings")
        return cls.from_dict(data, source=str(path))


# rome-22m is the design RomeGPT ships: 22.3M parameters with a 3000-token vocabulary.
# tiny trains in seconds and exists for tests and quick experiments.
PRESETS: dict[str, ModelConfig] = {
    "rome-22m": ModelConfig(),
    "tiny": ModelConfig(context_length=64, d_model=32, n_layers=2, n_heads=4, d_mlp=128),
}


def preset(name: str) -> ModelConfig:
    if name not in PRESETS:
        raise RomeError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]
