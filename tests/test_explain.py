"""`rome_core.explain` and `romegpt explain`, checked against direct computations on the tiny model."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from rome_core.cli import main
from rome_core.errors import RomeError
from rome_core.explain import NEIGHBOURS, explain

PROMPT = "Who is Caesar? The senate of Rome"


@torch.inference_mode()
def direct_logits(loaded, ids: list[int]) -> torch.Tensor:
    """Logits of a plain, untraced forward pass, shape (pos, vocab)."""
    return loaded.model(torch.tensor([ids]))[0].float()


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["explain", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# -- the explanation against the model ----------------------------------------------------------


def test_tokens_match_tokenizer(tiny_loaded):
    explanation = explain(tiny_loaded, PROMPT)
    encoding = tiny_loaded.tokenizer.encode(PROMPT)
    tokens = explanation.tokenization.tokens
    assert [t.id for t in tokens] == encoding.ids
    assert [(t.start, t.end) for t in tokens] == [(t.start, t.end) for t in encoding.tokens]
    assert explanation.tokenization.vocab_size == tiny_loaded.tokenizer.vocab_size
    assert explanation.selected.index == len(encoding.ids) - 1
    assert explanation.note is None


def test_lowercase_marks_changed_characters(tiny_loaded):
    stage = explain(tiny_loaded, "Who is CAESAR").lowercase
    assert stage.seen == "who is caesar"
    assert [c.typed_index for c in stage.changes] == [0, 7, 8, 9, 10, 11, 12]
    assert all(stage.seen[c.seen_start : c.seen_end] == stage.typed[c.typed_index].lower() for c in stage.changes)


def test_lowercase_tracks_lengthening_character(tiny_loaded):
    # "İ" lowercases to two characters, so later spans shift by one.
    stage = explain(tiny_loaded, "İa B").lowercase
    assert [(c.typed_index, c.seen_start, c.seen_end) for c in stage.changes] == [(0, 0, 2), (3, 4, 5)]


def test_unknown_token_shows_swallowed_characters(tiny_loaded):
    explanation = explain(tiny_loaded, "caesar ψ rome")
    unknown = [t for t in explanation.tokenization.tokens if t.unknown]
    assert len(unknown) == 1
    assert unknown[0].covered == "ψ"
    assert unknown[0].id == tiny_loaded.tokenizer.unk_id


def test_embeddings_are_model_rows(tiny_loaded):
    explanation = explain(tiny_loaded, PROMPT, position=3)
    token_id = explanation.selected.id
    expected_token = tiny_loaded.model.embed.weight[token_id].detach()
    expected_position = tiny_loaded.model.pos_embed.weight[3].detach()
    assert torch.allclose(torch.tensor(explanation.token_embedding.embedding.values), expected_token)
    assert torch.allclose(torch.tensor(explanation.positional_embedding.embedding.values), expected_position)
    assert explanation.token_embedding.embedding.norm == pytest.approx(float(expected_token.norm()), rel=1e-5)
    assert explanation.token_embedding.embedding.mean == pytest.approx(float(expected_token.mean()), abs=1e-6)


def test_nearest_tokens_match_direct_cosine(tiny_loaded):
    explanation = explain(tiny_loaded, PROMPT)
    token_id = explanation.selected.id
    table = tiny_loaded.model.embed.weight.detach()
    sims = F.cosine_similarity(table, table[token_id].unsqueeze(0), dim=-1)
    sims[token_id] = -float("inf")
    top = torch.topk(sims, NEIGHBOURS)
    neighbours = explanation.token_embedding.neighbours
    assert [n.id for n in neighbours] == top.indices.tolist()
    assert [n.similarity for n in neighbours] == pytest.approx(top.values.tolist(), abs=1e-6)
    assert [n.text for n in neighbours] == [tiny_loaded.tokenizer.id_to_token(i) for i in top.indices.tolist()]


def test_position_similarity_matches_direct_cosine(tiny_loaded):
    explanation = explain(tiny_loaded, PROMPT, position=2)
    table = tiny_loaded.model.pos_embed.weight.detach()
    expected = F.cosine_similarity(table, table[2].unsqueeze(0), dim=-1)
    stage = explanation.positional_embedding
    assert stage.similarity == pytest.approx(expected.tolist(), abs=1e-6)
    assert stage.similarity[2] == pytest.approx(1.0, abs=1e-6)
    assert len(stage.map) == len(stage.map_positions)
    row = stage.map_positions.index(2)
    assert stage.map[row] == pytest.approx(expected[stage.map_positions].tolist(), abs=1e-6)


def test_last_layer_lens_matches_real_logits(tiny_loaded):
    explanation = explain(tiny_loaded, PROMPT)
    ids = tiny_loaded.tokenizer.encode_ids(PROMPT)
    logits = direct_logits(tiny_loaded, ids)[-1]
    probs = torch.softmax(logits, dim=-1)
    last = explanation.layers.layers[-1]
    top = torch.topk(probs, len(last.lens))
    assert [p.id for p in last.lens] == top.indices.tolist()
    assert [p.prob for p in last.lens] == pytest.approx(top.values.tolist(), abs=1e-5)
    assert [p.logit for p in last.lens] == pytest.approx(logits[top.indices].tolist(), abs=1e-4)
    assert last.final_token_rank == 0


def test_first_layer_on_top_is_first_match(tiny_loaded):
    stage = explain(tiny_loaded, PROMPT).layers
    final_id = stage.final_token.id
    on_top = [layer.layer for layer in stage.layers if layer.lens[0].id == final_id]
    assert stage.first_layer_on_top == on_top[0]
    assert stage.layers[stage.first_layer_on_top].final_token_rank == 0
    assert all(layer.final_token_rank > 0 for layer in stage.layers[: stage.first_layer_on_top])


def test_output_top_k_matches_real_logits(tiny_loaded):
    explanation = explain(tiny_loaded, PROMPT, position=4, top_k=5)
    ids = tiny_loaded.tokenizer.encode_ids(PROMPT)
    logits = direct_logits(tiny_loaded, ids)[4]
    probs = torch.softmax(logits, dim=-1)
    top = torch.topk(probs, 5)
    output = explanation.output
    assert [p.id for p in output.top] == top.indices.tolist()
    assert [p.prob for p in output.top] == pytest.approx(top.values.tolist(), abs=1e-5)
    assert output.chosen == output.top[0]
    assert output.actual_next is not None
    assert output.actual_next.id == ids[5]
    assert output.actual_next.prob == pytest.approx(float(probs[ids[5]]), abs=1e-5)
    assert output.actual_next_rank == int((logits > logits[ids[5]]).sum())


def test_attention_rows_are_causal(tiny_loaded):
    explanation = explain(tiny_loaded, PROMPT, position=3)
    for layer in explanation.layers.layers:
        assert len(layer.heads) == tiny_loaded.model.config.n_heads
        for head in layer.heads:
            assert len(head.weights) == 4
            assert sum(head.weights) == pytest.approx(1.0, abs=1e-5)
            assert head.top[0].weight == pytest.approx(max(head.weights))
            assert head.top[0].position == head.weights.index(max(head.weights))


def test_sublayer_norms_add_up_to_stream(tiny_loaded):
    # The residual stream after the last layer is the embeddings plus everything the sublayers added,
    # so its norm is at most the sum of their norms (triangle inequality).
    explanation = explain(tiny_loaded, PROMPT)
    layers = explanation.layers.layers
    added = sum(layer.attention_norm + layer.mlp_norm for layer in layers)
    start = torch.tensor(explanation.token_embedding.embedding.values) + torch.tensor(explanation.positional_embedding.embedding.values)
    assert layers[-1].residual_norm <= float(start.norm()) + added + 1e-4
    assert all(layer.attention_norm > 0 and layer.mlp_norm > 0 for layer in layers)


def test_long_prompt_uses_last_context(tiny_loaded):
    context = tiny_loaded.model.config.context_length
    text = "the senate of rome met in the forum. " * 20
    ids = tiny_loaded.tokenizer.encode_ids(text)
    assert len(ids) > context
    explanation = explain(tiny_loaded, text)
    tokens = explanation.tokenization.tokens
    assert len(tokens) == context
    assert explanation.tokenization.dropped == len(ids) - context
    assert [t.id for t in tokens] == ids[-context:]
    assert explanation.note is not None and str(context) in explanation.note
    logits = direct_logits(tiny_loaded, ids[-context:])[-1]
    assert explanation.output.chosen.id == int(torch.argmax(logits))


def test_position_before_window_rejected(tiny_loaded):
    text = "the senate of rome met in the forum. " * 20
    with pytest.raises(RomeError, match="outside the model's window"):
        explain(tiny_loaded, text, position=0)


def test_top_k_clamped_to_vocabulary(tiny_loaded):
    vocab = tiny_loaded.tokenizer.vocab_size
    explanation = explain(tiny_loaded, PROMPT, top_k=vocab + 50)
    assert len(explanation.output.top) == vocab


def test_to_json_round_trips(tiny_loaded):
    explanation = explain(tiny_loaded, PROMPT, top_k=3)
    data = json.loads(explanation.to_json())
    assert data["tokenization"]["tokens"][0]["id"] == explanation.tokenization.tokens[0].id
    assert len(data["output"]["top"]) == 3
    assert len(data["layers"]["layers"]) == tiny_loaded.model.config.n_layers


# -- the command line ---------------------------------------------------------------------------


def test_cli_prints_all_stages(capsys, tiny_checkpoint, tiny_loaded):
    code, out, err = run_cli(capsys, PROMPT, "--checkpoint", str(tiny_checkpoint))
    assert code == 0, err
    for number, title in enumerate(["Lowercasing", "Tokenization", "Token embedding", "Positional embedding", "Transformer layers", "Final linear layer"], start=1):
        assert f"Stage {number} of 6: {title}" in out
    explanation = explain(tiny_loaded, PROMPT)
    chosen = explanation.output.chosen
    assert f"({chosen.prob:.1%}), the most likely token" in out
    assert f"vocabulary size {tiny_loaded.tokenizer.vocab_size}" in out
    assert f"first on top after layer {explanation.layers.first_layer_on_top}" in out
    assert f"{explanation.token_embedding.neighbours[0].similarity:+.3f}" in out


def test_cli_position_and_top_k(capsys, tiny_checkpoint, tiny_loaded):
    code, out, err = run_cli(capsys, PROMPT, "--position", "2", "--top-k", "3", "--json", "-", "--checkpoint", str(tiny_checkpoint))
    assert code == 0, err
    data = json.loads(out)
    ids = tiny_loaded.tokenizer.encode_ids(PROMPT)
    assert data["selected"]["index"] == 2
    assert len(data["output"]["top"]) == 3
    logits = direct_logits(tiny_loaded, ids)[2]
    assert [p["id"] for p in data["output"]["top"]] == torch.topk(logits, 3).indices.tolist()


def test_cli_json_stdout_is_only_json(capsys, tiny_checkpoint, tiny_loaded):
    code, out, err = run_cli(capsys, PROMPT, "--json", "-", "--checkpoint", str(tiny_checkpoint))
    assert code == 0, err
    data = json.loads(out)
    assert [t["id"] for t in data["tokenization"]["tokens"]] == tiny_loaded.tokenizer.encode_ids(PROMPT)
    for key in ("token_embedding", "positional_embedding", "layers", "output"):
        assert key in data
    assert "mean" in data["token_embedding"]["embedding"]
    assert len(data["layers"]["layers"][0]["heads"]) == tiny_loaded.model.config.n_heads
    assert len(data["layers"]["layers"][0]["lens"]) > 0


def test_cli_json_file(capsys, tiny_checkpoint, tmp_path):
    target = tmp_path / "trace.json"
    code, out, err = run_cli(capsys, PROMPT, "--json", str(target), "--checkpoint", str(tiny_checkpoint))
    assert code == 0, err
    data = json.loads(target.read_text(encoding="utf-8"))
    assert data["top_k"] == 10
    assert "Stage 6 of 6" in out
    assert f"wrote the trace summary to {target}" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["", ], "the prompt is empty"),
        (["   "], "the prompt is empty"),
        ([PROMPT, "--position", "99"], "position 99 is out of range"),
        ([PROMPT, "--position", "-1"], "position -1 is out of range"),
        ([PROMPT, "--top-k", "0"], "invalid top-k 0"),
    ],
)
def test_cli_bad_input_one_line_error(capsys, tiny_checkpoint, args, message):
    code, out, err = run_cli(capsys, *args, "--checkpoint", str(tiny_checkpoint))
    assert code == 2
    assert message in err
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_cli_unwritable_json_path(capsys, tiny_checkpoint, tmp_path):
    target = tmp_path / "missing-folder" / "trace.json"
    code, out, err = run_cli(capsys, PROMPT, "--json", str(target), "--checkpoint", str(tiny_checkpoint))
    assert code == 2
    assert f"{target}: cannot write the JSON trace" in err
    assert "pass a writable file path" in err
    assert err.count("\n") == 1


def test_cli_missing_checkpoint(capsys, tmp_path):
    code, out, err = run_cli(capsys, PROMPT, "--checkpoint", str(tmp_path / "nowhere"))
    assert code == 2
    assert "checkpoint folder not found" in err
