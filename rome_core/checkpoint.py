"""Checkpoint folders: config.json, model.safetensors, tokenizer.json and card.json.

Weights are safetensors (never pickles). A folder is written next to its destination
and renamed into place, so a crash mid-write leaves the previous checkpoint loadable.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from rome_core.config import ModelConfig
from rome_core.errors import RomeError
from rome_core.model import RomeGPT
from rome_core.tokenizer import RomeTokenizer

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
CARD_FILE = "card.json"
# The shipped model's folder, found relative to the repository root.
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent.parent / "checkpoints" / "romegpt-22m"


@dataclass
class LoadedModel:
    model: RomeGPT
    tokenizer: RomeTokenizer
    card: dict
    path: Path


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json(path: Path, data: dict) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())


def replace_folder_atomically(destination: Path, fill) -> None:
    """Build a folder with `fill(tmp_path)` beside `destination`, then swap it into place.

    If the process dies mid-way, `destination` (or, between the two renames, `destination.old`)
    still holds the previous complete folder; `resolve_checkpoint_folder` knows to look there.
    """
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{destination.name}.tmp-", dir=destination.parent))
    except OSError as error:
        raise RomeError(
            f"{destination}: failed to create the checkpoint folder ({error.strerror or error}); "
            "choose a writable --out folder"
        ) from None
    try:
        fill(tmp)
        # mkdtemp makes a private folder; a checkpoint is meant to be read by others too.
        os.chmod(tmp, 0o755)
        for child in tmp.iterdir():
            if child.is_file():
                os.chmod(child, 0o644)
                with open(child, "rb") as handle:
                    os.fsync(handle.fileno())
        _fsync_dir(tmp)
        old = destination.with_name(destination.name + ".old")
        if destination.exists():
            if old.exists():
                shutil.rmtree(old)
            os.replace(destination, old)
        os.replace(tmp, destination)
        _fsync_dir(destination.parent)
        if old.exists():
            shutil.rmtree(old)
    except OSError as error:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RomeError(
            f"{destination}: failed to write checkpoint ({error.strerror or error}); "
            "free disk space or choose a writable --out folder; the previous checkpoint is kept"
        ) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_checkpoint(
    folder: Path,
    model: RomeGPT,
    tokenizer: RomeTokenizer,
    card: dict,
    dtype: torch.dtype | None = None,
    extra_files: dict[str, object] | None = None,
) -> None:
    """Write an inference checkpoint atomically. `dtype` (e.g. bfloat16) shrinks the stored weights.

    `extra_files` maps file names to a callable `write(path)` for training-state files.
    """
    state = {name: t.detach().to("cpu", dtype or t.dtype).contiguous() for name, t in model.state_dict().items()}

    def fill(tmp: Path) -> None:
        (tmp / CONFIG_FILE).write_text(model.config.to_json(), encoding="utf-8")
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt", "model": "romegpt"})
        tokenizer.save(tmp / TOKENIZER_FILE)
        write_json(tmp / CARD_FILE, card)
        for name, write in (extra_files or {}).items():
            write(tmp / name)

    replace_folder_atomically(Path(folder), fill)


def resolve_checkpoint_folder(path: Path) -> Path:
    """Accept a checkpoint folder or a training run folder (use its best, else latest, checkpoint)."""
    path = Path(path)
    if not path.exists():
        old = path.with_name(path.name + ".old")
        if old.is_dir():
            log.warning("%s is missing; using the previous complete copy %s", path, old)
            return old
        raise RomeError(f"{path}: checkpoint folder not found; give a checkpoint or run folder made by `romegpt train`")
    if not path.is_dir():
        raise RomeError(f"{path}: expected a checkpoint folder, got a file; pass the folder that contains {WEIGHTS_FILE}")
    if (path / WEIGHTS_FILE).exists() or (path / CONFIG_FILE).exists():
        return path
    for name in ("best", "latest"):
        candidate = path / name
        if candidate.is_dir() or candidate.with_name(name + ".old").is_dir():
            return resolve_checkpoint_folder(candidate)
    if (path / "metrics.jsonl").is_file():
        raise RomeError(f"{path}: this run has not saved a checkpoint yet; wait for its first checkpoint or pass another folder")
    raise RomeError(f"{path}: no {WEIGHTS_FILE} here and no best/ or latest/ checkpoint inside; is this a RomeGPT run folder?")


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise RomeError(f"{path}: weights file not found; the checkpoint is incomplete, copy it again or retrain")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise RomeError(f"{path}: not a valid safetensors file ({first}); the file is truncated or corrupt, restore it") from None


def load_checkpoint(path: Path | None = None, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> LoadedModel:
    """Load a checkpoint folder for inference on `device`. Errors name the file and the fix."""
    folder = resolve_checkpoint_folder(path or DEFAULT_CHECKPOINT)
    config = ModelConfig.load(folder / CONFIG_FILE)
    tokenizer = RomeTokenizer.load(folder / TOKENIZER_FILE)
    if tokenizer.vocab_size != config.vocab_size:
        raise RomeError(
            f"{folder / TOKENIZER_FILE}: vocabulary of {tokenizer.vocab_size} does not match the model's "
            f"{config.vocab_size}; use the tokenizer.json saved with these weights"
        )
    weights_path = folder / WEIGHTS_FILE
    state = load_weights(weights_path)
    model = RomeGPT(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise RomeError(
            f"{weights_path}: tensor names do not match the config (missing {missing[:3]}, unexpected {unexpected[:3]}); "
            "the weights and config.json come from different models"
        )
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape:
            raise RomeError(
                f"{weights_path}: {name} has shape {tuple(tensor.shape)} but config.json needs "
                f"{tuple(expected[name].shape)}; the weights and config.json come from different models"
            )
    # Weights may be stored in bf16 to halve the file; compute in fp32 unless asked otherwise.
    model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()})
    model.to(device=device, dtype=dtype or torch.float32)
    model.eval()
    card = {}
    card_path = folder / CARD_FILE
    if card_path.is_file():
        try:
            card = json.loads(card_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            log.warning("%s is not valid JSON; ignoring the model card", card_path)
    return LoadedModel(model=model, tokenizer=tokenizer, card=card, path=folder)
