import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rome_core import corpus
from rome_core.checkpoint import load_checkpoint
from rome_core.config import preset
from rome_core.errors import RomeError
from rome_core.train import Trainer, TrainConfig
from tests.conftest import train_tiny


def read_metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name


def test_tiny_run_writes_checkpoints_and_metrics(tiny_run):
    assert (tiny_run / "latest" / "model.safetensors").is_file()
    assert (tiny_run / "best" / "model.safetensors").is_file()
    records = read_metrics(tiny_run)
    assert records[0]["event"] == "start"
    assert records[0]["vocab_size"] == load_checkpoint(tiny_run).model.config.vocab_size
    assert records[-1]["event"] == "end"
    train = [r for r in records if r["event"] == "train"]
    assert {"step", "tokens", "train_loss", "lr", "tokens_per_s", "elapsed_s"} <= train[0].keys()
    evals = [r for r in records if r["event"] == "eval"]
    assert {"val_loss", "bpc", "sample", "probe"} <= evals[-1].keys()
    assert len(evals[-1]["probe"]) == 5
    assert evals[-1]["val_loss"] < math.log(load_checkpoint(tiny_run).model.config.vocab_size)
    card = json.loads((tiny_run / "latest" / "card.json").read_text())
    assert card["steps"] == 40
    assert card["final"]["bpc"] == pytest.approx(evals[-1]["bpc"])


def test_schedule_warms_up_then_decays():
    cfg = TrainConfig(steps=100, warmup_steps=10, lr=1e-3, min_lr_ratio=0.1)
    assert cfg.lr_at(0) == pytest.approx(1e-4)
    assert cfg.lr_at(9) == pytest.approx(1e-3)
    assert cfg.lr_at(100) == pytest.approx(1e-4)
    assert cfg.lr_at(10) > cfg.lr_at(50) > cfg.lr_at(99)


def test_resume_matches_uninterrupted_run(sample_corpus_dir, tmp_path):
    train_tiny(sample_corpus_dir, tmp_path / "straight", steps=40)
    tokenizer, data = corpus.prepare([sample_corpus_dir], tmp_path / "cache", vocab_size=300)
    config = replace(preset("tiny"), vocab_size=tokenizer.vocab_size)
    settings = TrainConfig(steps=40, batch_size=4, lr=3e-3, warmup_steps=5, eval_every=20, eval_batches=2, checkpoint_every=20, log_every=5)
    first = Trainer(config, settings, tokenizer, data, tmp_path / "split", progress=False)
    first.train(stop_at=20)
    first.close()
    second = Trainer(config, settings, tokenizer, data, tmp_path / "split", resume=True, progress=False)
    assert second.step == 20
    second.train()
    second.close()
    assert_same_weights(tmp_path / "straight" / "latest", tmp_path / "split" / "latest")
    records = read_metrics(tmp_path / "split")
    assert [r["step"] for r in records if r["event"] == "resume"] == [20]
    after = next(r for r in records if r["event"] == "train" and r["step"] == 25)
    assert after["lr"] == pytest.approx(settings.lr_at(24))


def test_resume_into_longer_run_extends_schedule(sample_corpus_dir, tmp_path):
    run = tmp_path / "run"
    train_tiny(sample_corpus_dir, run, steps=20)
    tokenizer, data = corpus.prepare([sample_corpus_dir], tmp_path / "cache", vocab_size=300)
    config = replace(preset("tiny"), vocab_size=tokenizer.vocab_size)
    longer = TrainConfig(steps=30, batch_size=4, lr=3e-3, warmup_steps=5, eval_every=20, eval_batches=2, checkpoint_every=20, log_every=5)
    trainer = Trainer(config, longer, tokenizer, data, run, resume=True, progress=False)
    trainer.train()
    trainer.close()
    records = [r for r in read_metrics(run) if r["event"] == "train" and r["step"] > 20]
    assert records[-1]["step"] == 30
    assert records[0]["lr"] == pytest.approx(longer.lr_at(records[0]["step"] - 1))
    assert records[0]["lr"] not in (0.0, longer.lr)


def test_existing_run_needs_resume_flag(tiny_run, sample_corpus_dir, tmp_path):
    tokenizer, data = corpus.prepare([sample_corpus_dir], tmp_path / "cache", vocab_size=300)
    config = replace(preset("tiny"), vocab_size=tokenizer.vocab_size)
    with pytest.raises(RomeError, match="pass --resume"):
        Trainer(config, TrainConfig(steps=5), tokenizer, data, tiny_run, progress=False)


def test_non_finite_loss_stops_with_step(sample_corpus_dir, tmp_path):
    tokenizer, data = corpus.prepare([sample_corpus_dir], tmp_path / "cache", vocab_size=300)
    config = replace(preset("tiny"), vocab_size=tokenizer.vocab_size)
    trainer = Trainer(config, TrainConfig(steps=10, batch_size=2, eval_every=5, checkpoint_every=5), tokenizer, data, tmp_path / "nan", progress=False)
    with torch.no_grad():
        trainer.model.blocks[0].mlp.fc_in.weight.fill_(float("nan"))
    with pytest.raises(RomeError, match="at step 0"):
        trainer.train()
    trainer.close()
    assert not (tmp_path / "nan" / "latest").exists()


def cli_train(data: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "rome_core.cli", "train", "--data", str(data), "--out", str(out),
        "--preset", "tiny", "--cache-dir", str(cache), "--no-progress", *extra,
    ]


@pytest.mark.slow
def test_sigkill_then_resume_gives_same_weights(sample_corpus_dir, tmp_path):
    args = ("--steps", "400", "--checkpoint-every", "10", "--eval-every", "100")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(cli_train(sample_corpus_dir, tmp_path / "straight", tmp_path / "cache", *args), check=True, env=env, capture_output=True, timeout=600)

    out = tmp_path / "killed"
    process = subprocess.Popen(cli_train(sample_corpus_dir, out, tmp_path / "cache", *args), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = out / "latest" / "trainer_state.json"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if json.loads(state.read_text())["step"] >= 20:
                break
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            pass
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    killed_at = json.loads(state.read_text())["step"] if state.exists() else json.loads((out / "latest.old" / "trainer_state.json").read_text())["step"]
    assert 20 <= killed_at < 400, "the kill should land mid-run"
    load_checkpoint(out / "latest" if (out / "latest").exists() else out / "latest.old")

    subprocess.run(cli_train(sample_corpus_dir, out, tmp_path / "cache", *args, "--resume"), check=True, env=env, capture_output=True, timeout=600)
    assert_same_weights(tmp_path / "straight" / "latest", out / "latest")
    records = read_metrics(out)
    resumed = [r for r in records if r["event"] == "resume"]
    assert len(resumed) == 1
    steps_after = [r["step"] for r in records[records.index(resumed[0]) :] if r["event"] == "train"]
    assert steps_after[0] > resumed[0]["step"]
    assert steps_after[-1] == 400


@pytest.mark.slow
def test_ddp_two_processes_end_with_identical_weights(sample_corpus_dir, tmp_path):
    out = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
        # --standalone lets torchrun bind a free loopback port itself, so no other test can take it first.
        "--standalone",
        "-m", "rome_core.cli", "train", "--data", str(sample_corpus_dir), "--out", str(out),
        "--preset", "tiny", "--steps", "30", "--cache-dir", str(tmp_path / "cache"), "--no-progress",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    card = json.loads((out / "latest" / "card.json").read_text())
    assert card["world_size"] == 2
    digests = card["rank_weight_digests"]
    assert len(digests) == 2
    assert digests[0] == digests[1]
    # Only rank 0 writes metrics: one start record, not two.
    assert sum(1 for r in read_metrics(out) if r["event"] == "start") == 1


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--resume"], "nothing to resume"),
        (["--config", "LIST"], "expected a JSON object with only 'model' and 'train' keys"),
        (["--config", "TYPO"], "expected a JSON object with only 'model' and 'train' keys"),
    ],
)
def test_train_cli_rejects_bad_input(sample_corpus_dir, tmp_path, capsys, extra, message):
    from rome_core.cli import main

    (tmp_path / "LIST").write_text("[1, 2]")
    (tmp_path / "TYPO").write_text('{"modle": {}}')
    extra = [str(tmp_path / e) if e in ("LIST", "TYPO") else e for e in extra]
    code = main(["train", "--data", str(sample_corpus_dir), "--out", str(tmp_path / "run"), "--preset", "tiny", "--cache-dir", str(tmp_path / "c"), *extra])
    assert code == 2
    assert message in capsys.readouterr().err


def test_train_cli_rejects_bad_out_and_resume(tiny_run, sample_corpus_dir, tmp_path, capsys):
    from rome_core.cli import main

    a_file = tmp_path / "out.txt"
    a_file.write_text("x")
    assert main(["train", "--data", str(sample_corpus_dir), "--out", str(a_file), "--preset", "tiny"]) == 2
    assert "--out is a file" in capsys.readouterr().err
    assert main(["train", "--data", str(sample_corpus_dir), "--out", str(tiny_run), "--resume", "--steps", "10"]) == 2
    assert "already at step 40" in capsys.readouterr().err
    assert main(["train", "--data", str(sample_corpus_dir), "--out", str(tiny_run), "--resume", "--preset", "rome-22m", "--steps", "50"]) == 2
    assert "another model shape" in capsys.readouterr().err


@pytest.mark.parametrize(
    "config, message",
    [
        ('{"train": {"steps": 10.5}}', "invalid setting steps=10.5; use a whole number"),
        ('{"train": {"lr": "fast"}}', 'invalid setting lr="fast"; use a finite number'),
        ('{"train": {"batch_size": null}}', "invalid setting batch_size=null; use a whole number"),
        ('{"train": {"beta1": 1.5}}', "beta1=1.5 must be in [0, 1)"),
        ('{"model": {"n_layers": "3"}}', 'invalid setting n_layers="3"; use a whole number'),
        ('{"model": {"n_heads": 0}}', "n_heads=0 must be at least 1"),
        ('{"model": {"vocab_size": 1000000000000}}', "vocab_size=1000000000000 is above the limit 65536"),
        ('{"train": {"batch_size": 1000000000000}}', "batch_size=1000000000000 is above the limit 65536"),
        ('{"train": {"seed": -5}}', "seed=-5; use a whole number from 0"),
        ('{"train": {"seq_len": 100000}}', "seq_len=100000 is longer than the model's context 64"),
    ],
)
def test_config_value_types_checked(sample_corpus_dir, tmp_path, capsys, config, message):
    from rome_core.cli import main

    (tmp_path / "config.json").write_text(config)
    out = tmp_path / "run"
    code = main(["train", "--data", str(sample_corpus_dir), "--out", str(out), "--preset", "tiny", "--config", str(tmp_path / "config.json")])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()  # rejected before anything is written


def test_impossible_out_folder_rejected(tiny_run, sample_corpus_dir, tmp_path, capsys):
    from rome_core.cli import main

    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    assert main(["train", "--data", str(sample_corpus_dir), "--out", str(a_file / "run"), "--preset", "tiny"]) == 2
    assert "cannot write to the --out folder (Not a directory)" in capsys.readouterr().err
    assert main(["export", str(tiny_run), "--out", str(a_file / "export")]) == 2
    assert "cannot write to the --out folder (Not a directory)" in capsys.readouterr().err
    assert main(["train", "--data", str(sample_corpus_dir), "--out", "", "--preset", "tiny"]) == 2
    assert "would write into the current folder" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "run"), "--preset", "tiny"]) == 2
    assert "missing: no such file or folder; check the --data path" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
