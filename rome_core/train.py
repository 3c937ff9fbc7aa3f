"""The trainer: AdamW with warmup and cosine decay, bf16 autocast, exact resume, DDP.

A run folder holds:
  metrics.jsonl   one JSON object per line, appended and flushed as training goes
  latest/         the newest checkpoint plus optimizer and RNG state (what --resume reads)
  best/           the checkpoint with the lowest validation loss so far

Batches are drawn from a random generator seeded by (seed, step, micro-step, rank), so the
data position after a resume is a function of the step alone and needs no saved state.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file

from rome_core.checkpoint import CARD_FILE, save_checkpoint
from rome_core.config import ModelConfig, check_field_types
from rome_core.corpus import TokenizedCorpus
from rome_core.errors import RomeError
from rome_core.generate import Generator, SamplingSettings
from rome_core.metrics import MetricsWriter
from rome_core.model import RomeGPT
from rome_core.tokenizer import RomeTokenizer

log = logging.getLogger(__name__)

LATEST = "latest"
BEST = "best"
STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.safetensors"
SAMPLE_PROMPT = "who is caesar?"
# At every evaluation the trainer records the top-5 next tokens for this prompt, so the
# dashboard can show the predictions sharpening as the loss falls.
PROBE_PROMPT = "the senate and the people of"


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings. Saved in the run folder; `--resume` may extend `steps`."""

    steps: int = 5000
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 1.5e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 200
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    eval_every: int = 250
    eval_batches: int = 16
    log_every: int = 10
    checkpoint_every: int = 250
    seed: int = 1337
    seq_len: int | None = None  # None: the model's full context length

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "grad_accum", "eval_every", "eval_batches", "log_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise RomeError(f"invalid training setting: {name}={getattr(self, name)} must be at least 1")
        if self.warmup_steps < 0:
            raise RomeError(f"invalid training setting: warmup_steps={self.warmup_steps} must be 0 or more")
        if not self.lr > 0:
            raise RomeError(f"invalid training setting: lr={self.lr} must be positive")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise RomeError(f"invalid training setting: min_lr_ratio={self.min_lr_ratio} must be in [0, 1]")
        for name in ("beta1", "beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise RomeError(f"invalid training setting: {name}={getattr(self, name)} must be in [0, 1)")
        if self.weight_decay < 0:
            raise RomeError(f"invalid training setting: weight_decay={self.weight_decay} must be 0 or more")
        if not self.grad_clip > 0:
            raise RomeError(f"invalid training setting: grad_clip={self.grad_clip} must be positive")
        for name in ("batch_size", "grad_accum"):
            if getattr(self, name) > 65536:
                raise RomeError(f"invalid training setting: {name}={getattr(self, name)} is above the limit 65536")
        if not 0 <= self.seed < 2**63:
            raise RomeError(f"invalid training setting: seed={self.seed}; use a whole number from 0 to {2**63 - 1}")
        if self.seq_len is not None and self.seq_len < 1:
            raise RomeError(f"invalid training setting: seq_len={self.seq_len} must be at least 1 (or null for the full context)")

    def window_length(self, model_config: ModelConfig) -> int:
        """Return the tokens per training window: seq_len, or the model's whole context when it is null."""
        if self.seq_len is not None and self.seq_len > model_config.context_length:
            raise RomeError(
                f"invalid training setting: seq_len={self.seq_len} is longer than the model's context "
                f"{model_config.context_length}; use at most {model_config.context_length}, or null for the full context"
            )
        return self.seq_len or model_config.context_length

    def lr_at(self, step: int) -> float:
        """Linear warmup to `lr`, then cosine decay to `lr * min_lr_ratio` at `steps`."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        span = max(1, self.steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        floor = self.lr * self.min_lr_ratio
        return floor + 0.5 * (self.lr - floor) * (1.0 + math.cos(math.pi * progress))

    @classmethod
    def from_dict(cls, data: dict, source: str) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RomeError(f"{source}: unknown training settings {unknown}; expected some of {sorted(known)}")
        check_field_types(cls, data, source)
        try:
            return cls(**data)
        except RomeError as error:
            raise RomeError(f"{source}: {error}") from None


def check_no_run(out_dir: Path) -> None:
    """Raise if `out_dir` already contains a run, which only --resume may continue."""
    if (out_dir / LATEST).exists():
        raise RomeError(f"{out_dir}: a training run already exists there; pass --resume to continue it or choose another --out")


@dataclass
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "DistributedContext":
        """Read torchrun's environment; start the process group when more than one process runs."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
        return cls(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank)


def pick_device(ctx: DistributedContext) -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", ctx.local_rank)
    return torch.device("cpu")


def pick_precision(device: torch.device) -> torch.dtype | None:
    """bf16 autocast where the hardware runs it natively, else fp32 (None)."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    capability = torch.backends.cpu.get_cpu_capability()
    # AVX-512 (with bf16 or AMX) runs bf16 matmuls in hardware; on older CPUs bf16 is emulated and slower.
    return torch.bfloat16 if capability.startswith("AVX512") else None


def describe_machine(device: torch.device) -> str:
    """Describe the hardware a run trained on, for the model card."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} x {torch.cuda.device_count()}"
    return f"{platform.machine()} CPU, {os.cpu_count()} cores, {torch.backends.cpu.get_cpu_capability()}"


def param_groups(model: RomeGPT, weight_decay: float) -> list[dict]:
    """Split parameters for AdamW: matrices and embedding tables (2-D or more) are decayed,
    biases and layer-norm parameters (vectors) are not."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def sample_batch(
    tokens: np.ndarray, batch_size: int, seq_len: int, seed: int, step: int, micro: int, rank: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw `batch_size` random windows of `seq_len + 1` tokens; the generator is seeded by position in the run."""
    rng = np.random.default_rng([seed, step, micro, rank])
    starts = rng.integers(0, len(tokens) - seq_len - 1, size=batch_size)
    window = np.stack([np.asarray(tokens[s : s + seq_len + 1], dtype=np.int64) for s in starts])
    data = torch.from_numpy(window)
    return data[:, :-1], data[:, 1:]


def eval_windows(tokens: np.ndarray, count: int, seq_len: int) -> list[int]:
    """Evenly spaced, fixed validation windows, so every evaluation scores the same text."""
    last = len(tokens) - seq_len - 1
    if last <= 0:
        return [0]
    return sorted({int(x) for x in np.linspace(0, last, num=count)})


def weights_digest(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class Trainer:
    """Trains a RomeGPT on a tokenized corpus and writes a run folder."""

    def __init__(
        self,
        model_config: ModelConfig,
        train_config: TrainConfig,
        tokenizer: RomeTokenizer,
        corpus: TokenizedCorpus,
        out_dir: Path,
        resume: bool = False,
        compile_model: bool = False,
        data_sources: list[str] | None = None,
        progress: bool = True,
        ctx: DistributedContext | None = None,
    ) -> None:
        self.ctx = ctx or DistributedContext.from_env()
        self.device = pick_device(self.ctx)
        self.precision = pick_precision(self.device)
        self.model_config = model_config
        self.config = train_config
        self.tokenizer = tokenizer
        self.corpus = corpus
        self.out_dir = Path(out_dir)
        self.data_sources = data_sources or []
        self.progress = progress and self.ctx.is_main
        self.seq_len = train_config.window_length(model_config)
        if len(corpus.train) <= self.seq_len + 1:
            raise RomeError(
                f"training split has {len(corpus.train)} tokens, fewer than one window of {self.seq_len + 1}; "
                "add more text or train a preset with a shorter context"
            )

        torch.manual_seed(train_config.seed)
        self.model = RomeGPT(model_config).to(self.device)
        self.optimizer = torch.optim.AdamW(
            param_groups(self.model, train_config.weight_decay),
            lr=train_config.lr,
            betas=(train_config.beta1, train_config.beta2),
            fused=self.device.type == "cuda",
        )
        self.step = 0
        self.tokens_seen = 0
        self.elapsed = 0.0
        self.best_val = math.inf
        self.last_eval: dict = {}
        if resume:
            self._load_state()
        else:
            check_no_run(self.out_dir)

        self.forward_model: torch.nn.Module = self.model
        if self.ctx.world_size > 1:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.forward_model = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=device_ids)
        if compile_model:
            self.forward_model = torch.compile(self.forward_model)
        self.metrics = MetricsWriter(self.out_dir / "metrics.jsonl") if self.ctx.is_main else None

    # -- state ----------------------------------------------------------------------------------

    def _load_state(self) -> None:
        folder = self.out_dir / LATEST
        if not folder.is_dir() and (self.out_dir / (LATEST + ".old")).is_dir():
            folder = self.out_dir / (LATEST + ".old")
        state_path = folder / STATE_FILE
        if not state_path.is_file():
            raise RomeError(f"{self.out_dir}: nothing to resume (no {LATEST}/{STATE_FILE}); start without --resume")
        state = json.loads(state_path.read_text())
        saved_model = ModelConfig.from_dict(state["model_config"], source=str(state_path))
        if dataclasses.replace(saved_model, dropout=self.model_config.dropout) != self.model_config:
            raise RomeError(
                f"{state_path}: the run was started with a different model shape; resume with the same --preset/--config"
            )
        weights = load_file(str(folder / "model.safetensors"), device="cpu")
        self.model.load_state_dict({k: v.float() for k, v in weights.items()})
        tensors = load_file(str(folder / OPTIMIZER_FILE), device="cpu")
        optim_state = {"state": {}, "param_groups": state["optimizer_param_groups"]}
        for key, tensor in tensors.items():
            if key.startswith("state."):
                _, index, name = key.split(".", 2)
                optim_state["state"].setdefault(int(index), {})[name] = tensor
        self.optimizer.load_state_dict(optim_state)
        torch.set_rng_state(tensors["rng.cpu"])
        if torch.cuda.is_available() and "rng.cuda" in tensors:
            torch.cuda.set_rng_state(tensors["rng.cuda"], self.device)
        self.step = state["step"]
        self.tokens_seen = state["tokens_seen"]
        self.elapsed = state["elapsed_s"]
        self.best_val = state.get("best_val", math.inf)
        self.last_eval = state.get("last_eval", {})
        log.info("resumed %s at step %d of %d", self.out_dir, self.step, self.config.steps)

    def _state_tensors(self) -> dict[str, torch.Tensor]:
        tensors: dict[str, torch.Tensor] = {"rng.cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        for index, entry in self.optimizer.state_dict()["state"].items():
            for name, value in entry.items():
                tensors[f"state.{index}.{name}"] = value.detach().cpu().contiguous()
        return tensors

    def card(self) -> dict:
        meta = self.corpus.meta
        return {
            "model": "RomeGPT",
            "parameters": self.model.num_parameters(),
            "steps": self.step,
            "tokens_seen": self.tokens_seen,
            "train_wall_time_s": round(self.elapsed, 1),
            "device": str(self.device),
            "machine": describe_machine(self.device),
            "precision": "bf16 autocast" if self.precision else "fp32",
            "world_size": self.ctx.world_size,
            "train_config": dataclasses.asdict(self.config),
            "data": {
                "sources": self.data_sources,
                "documents": meta.get("documents", []),
                "train_tokens": meta.get("train_tokens"),
                "val_tokens": meta.get("val_tokens"),
            },
            "final": self.last_eval,
        }

    def save(self) -> None:
        if not self.ctx.is_main:
            return
        state = {
            "step": self.step,
            "tokens_seen": self.tokens_seen,
            "elapsed_s": self.elapsed,
            "best_val": self.best_val,
            "last_eval": self.last_eval,
            "model_config": dataclasses.asdict(self.model_config),
            "train_config": dataclasses.asdict(self.config),
            "optimizer_param_groups": self.optimizer.state_dict()["param_groups"],
        }
        tensors = self._state_tensors()

        def write_state(path: Path) -> None:
            path.write_text(json.dumps(state, indent=2))

        def write_tensors(path: Path) -> None:
            save_file(tensors, str(path))

        save_checkpoint(
            self.out_dir / LATEST,
            self.model,
            self.tokenizer,
            self.card(),
            extra_files={STATE_FILE: write_state, OPTIMIZER_FILE: write_tensors},
        )

    # -- loop -----------------------------------------------------------------------------------

    def _autocast(self):
        if self.precision is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.precision)

    def _loss(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            return model(x, targets=y)

    @torch.no_grad()
    def evaluate(self) -> dict:
        """Score the fixed validation windows and record a sample and the probe's top-5."""
        self.model.eval()
        seq = min(self.seq_len, max(1, len(self.corpus.val) - 1))
        starts = eval_windows(self.corpus.val, self.config.eval_batches * self.config.batch_size, seq)
        losses = []
        for i in range(0, len(starts), self.config.batch_size):
            chunk = starts[i : i + self.config.batch_size]
            window = np.stack([np.asarray(self.corpus.val[s : s + seq + 1], dtype=np.int64) for s in chunk])
            data = torch.from_numpy(window).to(self.device)
            losses.append(float(self._loss(self.model, data[:, :-1], data[:, 1:])))
        val_loss = sum(losses) / len(losses)
        bpc = val_loss / math.log(2) / self.corpus.val_chars_per_token

        generator = Generator(self.model, self.tokenizer)
        settings = SamplingSettings(temperature=0.8, top_k=40, top_p=0.95, max_tokens=40, seed=0)
        with self._autocast():
            sample = "".join(s.token.text for s in generator.stream(self.tokenizer.encode_ids(SAMPLE_PROMPT), settings))
            probe_ids = torch.tensor([self.tokenizer.encode_ids(PROBE_PROMPT)], device=self.device)
            probs = torch.softmax(self.model(probe_ids)[0, -1].float(), dim=-1)
        top = torch.topk(probs, 5)
        probe = [
            {"token": self.tokenizer.id_to_token(int(i)), "prob": round(float(p), 4)}
            for p, i in zip(top.values, top.indices)
        ]
        self.model.train()
        return {"val_loss": val_loss, "bpc": bpc, "sample": SAMPLE_PROMPT + sample, "probe_prompt": PROBE_PROMPT, "probe": probe}

    def train(self, stop_at: int | None = None) -> dict:
        """Train up to `config.steps` (or stop early after step `stop_at`, as an interruption would)."""
        cfg = self.config
        last_step = min(cfg.steps, stop_at) if stop_at is not None else cfg.steps
        main = self.ctx.is_main
        if main:
            log.info(
                "training %s parameters on %s with %s for %d steps (%d tokens per step, world size %d)",
                f"{self.model.num_parameters():,}",
                self.device,
                "bf16 autocast" if self.precision else "fp32",
                cfg.steps,
                cfg.batch_size * cfg.grad_accum * self.seq_len * self.ctx.world_size,
                self.ctx.world_size,
            )
            self.metrics.write(
                {
                    "event": "resume" if self.step else "start",
                    "step": self.step,
                    "tokens": self.tokens_seen,
                    "total_steps": cfg.steps,
                    "precision": "bf16" if self.precision else "fp32",
                    "device": str(self.device),
                    "parameters": self.model.num_parameters(),
                    "vocab_size": self.model_config.vocab_size,
                }
            )
        self.model.train()
        tokens_per_step = cfg.batch_size * cfg.grad_accum * self.seq_len * self.ctx.world_size
        window_start, window_tokens = time.perf_counter(), 0
        progress = _Progress(cfg.steps, self.step) if self.progress else None
        try:
            while self.step < last_step:
                step_start = time.perf_counter()
                lr = cfg.lr_at(self.step)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                loss_sum = 0.0
                for micro in range(cfg.grad_accum):
                    x, y = sample_batch(self.corpus.train, cfg.batch_size, self.seq_len, cfg.seed, self.step, micro, self.ctx.rank)
                    x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
                    sync = micro == cfg.grad_accum - 1 or self.ctx.world_size == 1
                    guard = contextlib.nullcontext() if sync else self.forward_model.no_sync()
                    with guard:
                        loss = self._loss(self.forward_model, x, y) / cfg.grad_accum
                        loss.backward()
                    loss_sum += float(loss.detach())
                if not math.isfinite(loss_sum):
                    raise RomeError(
                        f"training loss became {loss_sum} at step {self.step}; stopped without saving it. "
                        f"The last good checkpoint is in {self.out_dir / LATEST}; lower --lr and --resume"
                    )
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.step += 1
                self.tokens_seen += tokens_per_step
                window_tokens += tokens_per_step
                self.elapsed += time.perf_counter() - step_start
                if progress:
                    progress.update(self.step, loss_sum, self.tokens_seen, self.elapsed)

                if main and (self.step % cfg.log_every == 0 or self.step == cfg.steps):
                    now = time.perf_counter()
                    rate = window_tokens / max(1e-9, now - window_start)
                    window_start, window_tokens = now, 0
                    self.metrics.write(
                        {
                            "event": "train",
                            "step": self.step,
                            "tokens": self.tokens_seen,
                            "train_loss": round(loss_sum, 5),
                            "lr": lr,
                            "tokens_per_s": round(rate, 1),
                            "elapsed_s": round(self.elapsed, 2),
                            "total_steps": cfg.steps,
                        }
                    )
                evaluate_now = self.step % cfg.eval_every == 0 or self.step == cfg.steps
                if evaluate_now and main:
                    result = self.evaluate()
                    self.last_eval = {"step": self.step, "train_loss": round(loss_sum, 5), **result}
                    self.metrics.write({"event": "eval", "step": self.step, "tokens": self.tokens_seen, "elapsed_s": round(self.elapsed, 2), **result})
                    log.info("step %d: val loss %.4f, %.3f bits per character", self.step, result["val_loss"], result["bpc"])
                    if result["val_loss"] < self.best_val:
                        self.best_val = result["val_loss"]
                        save_checkpoint(self.out_dir / BEST, self.model, self.tokenizer, self.card())
                if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                    self.save()
                if self.ctx.world_size > 1 and (evaluate_now or self.step % cfg.checkpoint_every == 0):
                    dist.barrier()
        finally:
            if progress:
                progress.close()

        result = {"step": self.step, "tokens_seen": self.tokens_seen, **self.last_eval}
        if self.ctx.world_size > 1:
            digests: list[str] = [""] * self.ctx.world_size
            dist.all_gather_object(digests, weights_digest(self.model))
            if len(set(digests)) != 1:
                raise RomeError(f"DDP ranks ended with different weights: {digests}")
            result["rank_weight_digests"] = digests
        if main and (self.out_dir / LATEST).is_dir():
            card = self.card()
            card.update(result)
            (self.out_dir / LATEST / CARD_FILE).write_text(json.dumps(card, indent=2))
            self.metrics.write({"event": "end", "step": self.step, "tokens": self.tokens_seen, "elapsed_s": round(self.elapsed, 2)})
        return result

    def close(self) -> None:
        if self.metrics:
            self.metrics.close()
        if self.ctx.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()


class _Progress:
    """A Rich progress bar with step, loss, tokens/s and ETA."""

    def __init__(self, total: int, start: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"),
            TextColumn("{task.fields[rate]:,.0f} tok/s"),
            TimeRemainingColumn(),
            transient=False,
        )
        self._task = self._progress.add_task("train", total=total, completed=start, loss=float("nan"), rate=0.0)
        self._progress.start()

    def update(self, step: int, loss: float, tokens: int, elapsed: float) -> None:
        self._progress.update(self._task, completed=step, loss=loss, rate=tokens / max(elapsed, 1e-9))

    def close(self) -> None:
        self._progress.stop()
