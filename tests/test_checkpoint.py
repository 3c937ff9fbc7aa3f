import copy
import errno
import json
import pickle
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from rome_core.checkpoint import load_checkpoint, save_checkpoint
from rome_core.errors import RomeError


@pytest.fixture()
def checkpoint_copy(tiny_checkpoint, tmp_path):
    folder = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, folder)
    return folder


def test_round_trip_keeps_weights(tiny_loaded, tmp_path):
    save_checkpoint(tmp_path / "copy", tiny_loaded.model, tiny_loaded.tokenizer, {"note": "test"})
    again = load_checkpoint(tmp_path / "copy")
    for (name, a), (_, b) in zip(tiny_loaded.model.state_dict().items(), again.model.state_dict().items()):
        assert torch.equal(a, b), name
    assert again.card == {"note": "test"}


def test_bf16_weights_load_for_inference(tiny_loaded, tmp_path):
    save_checkpoint(tmp_path / "bf16", tiny_loaded.model, tiny_loaded.tokenizer, {}, dtype=torch.bfloat16)
    stored = load_file(str(tmp_path / "bf16" / "model.safetensors"))
    assert all(t.dtype == torch.bfloat16 for t in stored.values())
    loaded = load_checkpoint(tmp_path / "bf16")
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(ids), tiny_loaded.model(ids), rtol=0.05, atol=0.05)


def test_run_folder_resolves_to_best(tiny_run):
    assert load_checkpoint(tiny_run).path == tiny_run / "best"


def test_no_pickles_in_checkpoint(tiny_checkpoint):
    names = {p.name for p in tiny_checkpoint.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "card.json"} <= names
    assert not [n for n in names if n.endswith((".pt", ".pth", ".bin", ".pkl"))]


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(RomeError, match="absent: checkpoint folder not found"):
        load_checkpoint(tmp_path / "absent")


def test_missing_weights_are_named(checkpoint_copy):
    (checkpoint_copy / "model.safetensors").unlink()
    with pytest.raises(RomeError, match=r"model\.safetensors: weights file not found"):
        load_checkpoint(checkpoint_copy)


def test_truncated_weights_are_refused(checkpoint_copy):
    weights = checkpoint_copy / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(RomeError, match=r"model\.safetensors: not a valid safetensors file"):
        load_checkpoint(checkpoint_copy)


def test_pickle_weights_are_refused(checkpoint_copy):
    (checkpoint_copy / "model.safetensors").write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    with pytest.raises(RomeError, match="not a valid safetensors file"):
        load_checkpoint(checkpoint_copy)


def test_shape_mismatch_is_refused(checkpoint_copy):
    config = json.loads((checkpoint_copy / "config.json").read_text())
    config["d_mlp"] *= 2
    (checkpoint_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(RomeError, match="has shape .* but config.json needs"):
        load_checkpoint(checkpoint_copy)


def test_tokenizer_vocab_mismatch_is_refused(checkpoint_copy):
    config = json.loads((checkpoint_copy / "config.json").read_text())
    config["vocab_size"] += 1
    (checkpoint_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(RomeError, match="does not match the model's"):
        load_checkpoint(checkpoint_copy)


def test_corrupt_config_is_refused(checkpoint_copy):
    (checkpoint_copy / "config.json").write_text("{broken")
    with pytest.raises(RomeError, match=r"config\.json: not valid JSON"):
        load_checkpoint(checkpoint_copy)


def test_failed_write_keeps_previous_checkpoint(tiny_loaded, checkpoint_copy):
    before = (checkpoint_copy / "model.safetensors").read_bytes()

    def disk_full(path):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(RomeError, match="No space left on device"):
        save_checkpoint(checkpoint_copy, tiny_loaded.model, tiny_loaded.tokenizer, {}, extra_files={"state.json": disk_full})
    assert (checkpoint_copy / "model.safetensors").read_bytes() == before
    assert not [p for p in checkpoint_copy.parent.iterdir() if ".tmp-" in p.name]
    load_checkpoint(checkpoint_copy)


def test_interrupted_swap_falls_back_to_old_copy(checkpoint_copy):
    # A crash between the two renames leaves only `<name>.old`.
    old = checkpoint_copy.with_name(checkpoint_copy.name + ".old")
    checkpoint_copy.rename(old)
    assert load_checkpoint(checkpoint_copy).path == old


def test_cli_error_is_one_line_without_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "rome_core.cli", "info", str(tmp_path / "nowhere")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
    assert "nowhere: checkpoint folder not found" in result.stderr


def test_export_writes_bf16_checkpoint_with_metrics(tiny_run, tmp_path):
    from rome_core.cli import main

    assert main(["export", str(tiny_run), "--out", str(tmp_path / "shipped"), "--bf16"]) == 0
    stored = load_file(str(tmp_path / "shipped" / "model.safetensors"))
    assert all(t.dtype == torch.bfloat16 for t in stored.values())
    assert (tmp_path / "shipped" / "metrics.jsonl").read_text() == (tiny_run / "metrics.jsonl").read_text()
    card = json.loads((tmp_path / "shipped" / "card.json").read_text())
    assert card["weights_dtype"] == "bfloat16"
    load_checkpoint(tmp_path / "shipped")


def test_export_rejects_unsafe_destinations(tiny_run, tmp_path):
    from rome_core.cli import main

    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "keep.txt").write_text("mine")
    assert main(["export", str(tiny_run), "--out", str(notes)]) == 2
    assert (notes / "keep.txt").read_text() == "mine"
    assert main(["export", str(tiny_run), "--out", str(tiny_run)]) == 2
    assert (tiny_run / "latest" / "trainer_state.json").is_file()
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert main(["export", str(tiny_run), "--out", str(a_file)]) == 2


def test_exported_checkpoint_is_readable_by_others(tiny_run, tmp_path):
    from rome_core.cli import main

    assert main(["export", str(tiny_run), "--out", str(tmp_path / "shared")]) == 0
    assert (tmp_path / "shared").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "shared" / "model.safetensors").stat().st_mode & 0o777 == 0o644


def test_cli_generate_and_info_details(tiny_run, tiny_checkpoint, tmp_path, capsys):
    from rome_core.cli import main

    assert main(["generate", "   ", "--checkpoint", str(tiny_checkpoint)]) == 2
    assert "the prompt '   ' has no text" in capsys.readouterr().err
    assert main(["info", "--checkpoint", str(tiny_checkpoint)]) == 0
    assert str(tiny_checkpoint) in capsys.readouterr().out
    assert main(["info", str(tiny_run), "--checkpoint", str(tiny_checkpoint)]) == 2
    assert "two checkpoints given" in capsys.readouterr().err
    fresh_run = tmp_path / "fresh"
    fresh_run.mkdir()
    (fresh_run / "metrics.jsonl").write_text('{"event": "start", "step": 0}\n')
    assert main(["info", str(fresh_run)]) == 2
    assert "this run has not saved a checkpoint yet" in capsys.readouterr().err


def test_cli_generate_reports_end_of_text(tiny_loaded, tmp_path, capsys):
    import torch

    from rome_core.checkpoint import save_checkpoint
    from rome_core.cli import main

    model = copy.deepcopy(tiny_loaded.model)
    with torch.no_grad():
        model.unembed.bias[tiny_loaded.tokenizer.eot_id] = 1e4  # always ends the text at once
    save_checkpoint(tmp_path / "ends", model, tiny_loaded.tokenizer, {})
    assert main(["generate", "the senate", "--checkpoint", str(tmp_path / "ends")]) == 0
    captured = capsys.readouterr()
    assert captured.out == "the senate\n"
    assert "ended the text (end-of-text token)" in captured.err
