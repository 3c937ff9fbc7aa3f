"""The `romegpt` command line: app, train, generate, tokenize, info, explain, export."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

from rome_core.errors import RomeError

log = logging.getLogger("romegpt")

# glibc's malloc returns large freed blocks to the OS and maps them again on the next step.
# On the CPU that churn costs a measurable share of a training step, so raising both thresholds
# keeps the memory in the process. bench/train_speed.py measures the effect.
MALLOC_TUNABLES = "glibc.malloc.mmap_threshold=2147483647:glibc.malloc.trim_threshold=2147483647"


def _reexec_with_malloc_tuning() -> None:
    """Restart this process once with MALLOC_TUNABLES set (glibc reads them only at start-up)."""
    if sys.platform != "linux" or os.environ.get("ROMEGPT_NO_MALLOC_TUNING") or "glibc.malloc.mmap_threshold" in os.environ.get("GLIBC_TUNABLES", ""):
        return
    env = dict(os.environ)
    env["GLIBC_TUNABLES"] = ":".join(filter(None, [env.get("GLIBC_TUNABLES", ""), MALLOC_TUNABLES]))
    os.execve(sys.executable, [sys.executable, "-m", "rome_core.cli", *sys.argv[1:]], env)


def _add_sampling_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--temperature", type=float, default=0.8, help="sampling temperature; 0 picks the most likely token (default 0.8)")
    parser.add_argument("--top-k", type=int, default=40, help="sample from the k most likely tokens; 0 turns it off (default 40)")
    parser.add_argument("--top-p", type=float, default=0.95, help="sample from the smallest set with this probability mass; 1 turns it off (default 0.95)")
    parser.add_argument("--max-tokens", type=int, default=200, help="stop after this many new tokens (default 200)")
    parser.add_argument("--seed", type=int, default=None, help="random seed for reproducible sampling")
    parser.add_argument("--allow-unk", action="store_true", help="let sampling pick [UNK] (off by default: it carries no text)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="romegpt", description="RomeGPT: train, chat with and look inside a small GPT about ancient Rome.")
    parser.add_argument("--checkpoint", type=Path, default=None, help="checkpoint or run folder to open (default: the shipped romegpt-22m)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command")

    train = sub.add_parser("train", help="train a model on a folder or list of text files")
    train.add_argument("--data", type=Path, nargs="+", required=True, help="text files or folders of .txt files")
    train.add_argument("--out", type=Path, required=True, help="run folder for checkpoints and metrics.jsonl")
    train.add_argument("--preset", default=None, help="model preset: rome-22m or tiny (default rome-22m; a resumed run keeps its own)")
    train.add_argument("--config", type=Path, default=None, help="JSON file with 'model' and/or 'train' settings that override the preset")
    train.add_argument("--steps", type=int, default=None, help="optimizer steps in total (a resumed run may raise it)")
    train.add_argument("--batch-size", type=int, default=None, help="sequences per micro-batch on each process")
    train.add_argument("--grad-accum", type=int, default=None, help="micro-batches per optimizer step")
    train.add_argument("--lr", type=float, default=None, help="peak learning rate")
    train.add_argument("--dropout", type=float, default=None, help="dropout probability")
    train.add_argument("--eval-every", type=int, default=None, help="steps between validation runs")
    train.add_argument("--checkpoint-every", type=int, default=None, help="steps between checkpoints")
    train.add_argument("--tokenizer", type=Path, default=None, help="reuse this tokenizer.json instead of training one")
    train.add_argument("--cache-dir", type=Path, default=Path(os.environ.get("ROMEGPT_CACHE", Path.home() / ".cache" / "romegpt")), help="where tokenized corpora are cached (default ~/.cache/romegpt)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    train.add_argument("--compile", action="store_true", help="run the model through torch.compile (helps most on GPUs)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")

    gen = sub.add_parser("generate", help="stream a continuation of a prompt")
    gen.add_argument("prompt", help="text to continue (lowercased before use)")
    _add_sampling_flags(gen)
    gen.add_argument("--checkpoint", type=Path, default=None, dest="sub_checkpoint", help=argparse.SUPPRESS)

    tok = sub.add_parser("tokenize", help="show the tokens and ids of a text")
    tok.add_argument("text")
    tok.add_argument("--checkpoint", type=Path, default=None, dest="sub_checkpoint", help=argparse.SUPPRESS)

    export = sub.add_parser("export", help="copy a run's best checkpoint into a standalone folder, optionally as bf16")
    export.add_argument("run", type=Path, help="run or checkpoint folder to export")
    export.add_argument("--out", type=Path, required=True, help="folder to write (replaced atomically if it exists)")
    export.add_argument("--bf16", action="store_true", help="store the weights in bfloat16 (half the size; loads in fp32)")

    info = sub.add_parser("info", help="print a checkpoint's size, settings and training record")
    info.add_argument("path", nargs="?", type=Path, default=None, help="checkpoint folder (default: the shipped model)")
    info.add_argument("--checkpoint", type=Path, default=None, dest="sub_checkpoint", help=argparse.SUPPRESS)

    explain = sub.add_parser("explain", help="walk through the model's forward pass for a prompt, stage by stage")
    explain.add_argument("prompt", help="text to run through the model (lowercased before use)")
    explain.add_argument("--position", type=int, default=None, metavar="N", help="index of the token to follow, from 0 (default: the last token)")
    explain.add_argument("--top-k", type=int, default=10, metavar="K", help="how many next-token candidates to list (default 10)")
    explain.add_argument("--json", default=None, metavar="FILE", help="also write the trace summary as JSON to FILE; - writes only the JSON to stdout")
    explain.add_argument("--checkpoint", type=Path, default=None, dest="sub_checkpoint", metavar="PATH", help="checkpoint or run folder to open (default: the shipped romegpt-22m)")

    return parser


def _checkpoint_arg(args) -> Path | None:
    return getattr(args, "sub_checkpoint", None) or args.checkpoint


def _read_config_file(path: Path) -> dict:
    """Read a --config file: a JSON object with optional "model" and "train" objects."""
    try:
        overrides = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RomeError(f"{path}: cannot read config ({error}); pass a JSON file with 'model' and 'train' objects") from None
    if not isinstance(overrides, dict) or set(overrides) - {"model", "train"}:
        keys = sorted(overrides) if isinstance(overrides, dict) else type(overrides).__name__
        raise RomeError(f"{path}: expected a JSON object with only 'model' and 'train' keys, got {keys}")
    for key, value in overrides.items():
        if not isinstance(value, dict):
            raise RomeError(f"{path}: '{key}' must be a JSON object of settings, got {type(value).__name__}")
    return overrides


def _check_out_path(out: Path, purpose: str) -> None:
    """Reject an --out that is empty or names a file, before any work."""
    if not str(out).strip() or str(out) == ".":
        raise RomeError(f"--out {str(out)!r} (or empty) would write into the current folder; give a folder for {purpose}, e.g. --out runs/first")
    try:
        is_file = out.exists() and not out.is_dir()
    except OSError as error:  # e.g. a name longer than the file system allows
        raise RomeError(f"{out}: invalid --out path ({error.strerror or error}); choose a shorter or simpler path") from None
    if is_file:
        raise RomeError(f"{out}: --out is a file; choose a folder for {purpose}")


def _make_out_folder(out: Path, purpose: str) -> None:
    """Create --out (and its parents) and check it takes files; call _check_out_path first."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as error:
        raise RomeError(f"{out}: cannot write to the --out folder ({error.strerror or error}); choose a writable folder for {purpose}") from None


def _training_configs(args):
    """Build the model and training settings from the preset, a resumed run, --config and flags."""
    from rome_core.config import ModelConfig, preset
    from rome_core.corpus import find_text_files
    from rome_core.train import LATEST, STATE_FILE, TrainConfig, check_no_run

    # Everything that can be checked without reading the data is checked before --out is created.
    _check_out_path(args.out, "the run")
    find_text_files(list(args.data))
    if not args.resume:
        check_no_run(args.out)
    model_config = preset(args.preset or "rome-22m")
    train_config = TrainConfig()
    if args.preset == "tiny":
        train_config = TrainConfig(steps=200, batch_size=8, lr=3e-3, warmup_steps=10, eval_every=50, eval_batches=2, checkpoint_every=50, log_every=5)
    resumed_step = None
    if args.resume:
        state_path = args.out / LATEST / STATE_FILE
        if not state_path.is_file():
            raise RomeError(f"{args.out}: nothing to resume (no {LATEST}/{STATE_FILE}); start without --resume")
        state = json.loads(state_path.read_text())
        saved = ModelConfig.from_dict(state["model_config"], source=str(state_path))
        # The vocabulary follows the tokenizer and dropout may change, so compare only the shape.
        wanted = preset(args.preset) if args.preset else saved
        if dataclasses.replace(wanted, vocab_size=saved.vocab_size, dropout=saved.dropout) != saved:
            raise RomeError(f"{args.out}: the run was trained with another model shape than --preset {args.preset}; drop --preset when resuming")
        model_config = saved
        train_config = TrainConfig.from_dict(state["train_config"], source=str(state_path))
        resumed_step = state["step"]
    if args.config:
        overrides = _read_config_file(args.config)
        model_config = ModelConfig.from_dict({**model_config.__dict__, **overrides.get("model", {})}, source=str(args.config))
        train_config = TrainConfig.from_dict({**train_config.__dict__, **overrides.get("train", {})}, source=str(args.config))
    flag_overrides = {
        "steps": args.steps, "batch_size": args.batch_size, "grad_accum": args.grad_accum, "lr": args.lr,
        "eval_every": args.eval_every, "checkpoint_every": args.checkpoint_every,
    }
    chosen = {k: v for k, v in flag_overrides.items() if v is not None}
    train_config = TrainConfig.from_dict({**train_config.__dict__, **chosen}, source="command line")
    if args.dropout is not None:
        model_config = ModelConfig.from_dict({**model_config.__dict__, "dropout": args.dropout}, source="--dropout")
    if resumed_step is not None and train_config.steps <= resumed_step:
        raise RomeError(f"{args.out}: the run is already at step {resumed_step}; pass --steps above {resumed_step} to train further")
    train_config.window_length(model_config)
    _make_out_folder(args.out, "the run")
    return model_config, train_config


def cmd_train(args) -> int:
    import torch.distributed as torch_dist

    from rome_core import corpus
    from rome_core.config import ModelConfig
    from rome_core.tokenizer import RomeTokenizer
    from rome_core.train import LATEST, DistributedContext, Trainer

    model_config, train_config = _training_configs(args)
    ctx = DistributedContext.from_env()
    if not ctx.is_main:
        # Every rank reads the same corpus; only rank 0 reports it (warnings still come through).
        logging.getLogger("rome_core").setLevel(logging.WARNING)
    tokenizer = None
    run_tokenizer = args.out / LATEST / "tokenizer.json"
    if args.resume and run_tokenizer.is_file():
        tokenizer = RomeTokenizer.load(run_tokenizer)
    elif args.tokenizer:
        tokenizer = RomeTokenizer.load(args.tokenizer)
    # Under torchrun, rank 0 tokenizes and fills the cache first; the other ranks then read it.
    if ctx.world_size > 1 and not ctx.is_main:
        torch_dist.barrier()
    tokenizer, data = corpus.prepare(list(args.data), args.cache_dir, tokenizer=tokenizer, vocab_size=model_config.vocab_size)
    if ctx.world_size > 1 and ctx.is_main:
        torch_dist.barrier()
    if tokenizer.vocab_size != model_config.vocab_size:
        model_config = ModelConfig.from_dict({**model_config.__dict__, "vocab_size": tokenizer.vocab_size}, source="tokenizer")

    trainer = Trainer(
        model_config, train_config, tokenizer, data, args.out,
        resume=args.resume, compile_model=args.compile,
        data_sources=[str(p) for p in args.data], progress=not args.no_progress, ctx=ctx,
    )
    try:
        result = trainer.train()
    finally:
        trainer.close()
    if trainer.ctx.is_main:
        print(f"done: step {result['step']}, val loss {result.get('val_loss', float('nan')):.4f}, "
              f"{result.get('bpc', float('nan')):.3f} bits per character; checkpoint in {args.out}")
    return 0


def cmd_generate(args) -> int:
    from rome_core.checkpoint import load_checkpoint
    from rome_core.generate import Generator, SamplingSettings

    settings = SamplingSettings(
        temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, max_tokens=args.max_tokens,
        seed=args.seed, allow_unknown=args.allow_unk,
    )
    if not args.prompt.strip():
        raise RomeError(f"the prompt {args.prompt!r} has no text; give some words to continue")
    loaded = load_checkpoint(_checkpoint_arg(args))
    encoding = loaded.tokenizer.encode(args.prompt)
    sys.stdout.write(encoding.text)
    sys.stdout.flush()
    generator = Generator(loaded.model, loaded.tokenizer)
    for step in generator.stream(encoding.ids, settings):
        sys.stdout.write(step.token.text)
        sys.stdout.flush()
    sys.stdout.write("\n")
    if generator.finish_reason == "end_of_text":
        print("romegpt: the model ended the text (end-of-text token) before --max-tokens", file=sys.stderr)
    return 0


def cmd_tokenize(args) -> int:
    from rich.console import Console
    from rich.text import Text

    from rome_core.checkpoint import DEFAULT_CHECKPOINT, resolve_checkpoint_folder
    from rome_core.tokenizer import RomeTokenizer

    folder = resolve_checkpoint_folder(_checkpoint_arg(args) or DEFAULT_CHECKPOINT)
    tokenizer = RomeTokenizer.load(folder / "tokenizer.json")
    encoding = tokenizer.encode(args.text)
    console = Console(highlight=False)
    console.print(f"{len(encoding.tokens)} tokens")
    for token in encoding.tokens:
        line = Text()
        line.append(f"{token.id:>5}  ")
        if token.unknown:
            line.append("[UNK]", style="bold red")
            line.append(f"  covers {encoding.covered(token)!r}", style="red")
        else:
            line.append(repr(token.text))
        console.print(line)
    return 0


def cmd_export(args) -> int:
    import shutil

    import torch

    from rome_core.checkpoint import load_checkpoint, save_checkpoint

    from rome_core.checkpoint import WEIGHTS_FILE

    loaded = load_checkpoint(args.run)
    _check_out_path(args.out, "the checkpoint")
    out = args.out.resolve()
    if out.is_dir() and any(out.iterdir()) and not (out / WEIGHTS_FILE).is_file():
        raise RomeError(f"{args.out}: folder is not empty and contains no checkpoint; choose a new or empty folder")
    source = args.run.resolve()
    if out in (source, loaded.path.resolve()) or out in source.parents or source in out.parents:
        raise RomeError(f"{args.out}: --out overlaps the checkpoint being exported; choose a folder outside {args.run}")
    _make_out_folder(args.out, "the checkpoint")
    card = dict(loaded.card)
    card["exported_from"] = loaded.path.name
    card["weights_dtype"] = "bfloat16" if args.bf16 else "float32"
    metrics = next((p / "metrics.jsonl" for p in (loaded.path, loaded.path.parent) if (p / "metrics.jsonl").is_file()), None)

    def copy_metrics(path: Path) -> None:
        shutil.copyfile(metrics, path)

    extra = {"metrics.jsonl": copy_metrics} if metrics else {}
    save_checkpoint(args.out, loaded.model, loaded.tokenizer, card, dtype=torch.bfloat16 if args.bf16 else None, extra_files=extra)
    print(f"exported {loaded.path} to {args.out}" + (" with its metrics.jsonl" if metrics else ""))
    return 0


def cmd_info(args) -> int:
    from rome_core.checkpoint import load_checkpoint

    if args.path and args.sub_checkpoint:
        raise RomeError(f"two checkpoints given ({args.path} and --checkpoint {args.sub_checkpoint}); pass one of them")
    loaded = load_checkpoint(args.path or _checkpoint_arg(args))
    config = loaded.model.config
    count = loaded.model.num_parameters()
    print(f"checkpoint  {loaded.path}")
    print(f"parameters  {count:,} ({count / 1e6:.1f}M)" if count >= 1e6 else f"parameters  {count:,} ({count / 1e3:.0f}k)")
    print(f"vocabulary  {config.vocab_size}, context {config.context_length}, width {config.d_model}, "
          f"{config.n_layers} layers, {config.n_heads} heads, MLP {config.d_mlp}")
    card = loaded.card
    if card:
        final = card.get("final", {})
        print(f"trained     {card.get('steps', '?')} steps, {card.get('tokens_seen', 0):,} tokens, {card.get('train_wall_time_s', '?')} s on {card.get('device', '?')}")
        if final:
            print(f"validation  loss {final.get('val_loss', float('nan')):.4f}, {final.get('bpc', float('nan')):.3f} bits per character")
    return 0


def cmd_explain(args) -> int:
    from rich.console import Console

    from rome_core.checkpoint import load_checkpoint
    from rome_core.explain import explain
    from rome_tui.explain_render import render_explanation

    if not args.prompt.strip():
        raise RomeError('the prompt is empty; pass some text, e.g. romegpt explain "who is caesar?"')
    loaded = load_checkpoint(_checkpoint_arg(args))
    explanation = explain(loaded, args.prompt, position=args.position, top_k=args.top_k)
    if args.json == "-":
        sys.stdout.write(explanation.to_json())
        return 0
    if args.json is not None:
        try:
            Path(args.json).write_text(explanation.to_json(), encoding="utf-8")
        except OSError as error:
            raise RomeError(f"{args.json}: cannot write the JSON trace ({error.strerror or error}); pass a writable file path, or - for stdout") from None
    console = Console(highlight=False)
    console.print(render_explanation(explanation, console.width))
    if args.json is not None:
        console.print(f"wrote the trace summary to {args.json}", style="dim", soft_wrap=True)
    return 0


class _CurrentStderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time of each record.

    The training progress bar (Rich) swaps sys.stderr for a proxy that prints above the bar. A
    plain StreamHandler keeps the stream it started with, so it would write into the bar's line.
    """

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = _CurrentStderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, handlers=[handler])
    handlers = {"train": cmd_train, "generate": cmd_generate, "tokenize": cmd_tokenize, "info": cmd_info, "explain": cmd_explain, "export": cmd_export}
    try:
        if args.command is None:
            from rome_tui.app import run_app

            return run_app(args.checkpoint)
        if args.command == "train" and argv is None:
            _reexec_with_malloc_tuning()
        return handlers[args.command](args)
    except RomeError as error:
        print(f"romegpt: error: {error}", file=sys.stderr)
        return 2
    except MemoryError:
        print("romegpt: error: out of memory; choose a smaller model, batch or context", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("romegpt: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of our output went away (e.g. `romegpt generate ... | head`): stop quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
