"""The Textual app driven through its Pilot on the real tiny checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from textual import events

from rome_core.generate import Generator, SamplingSettings
from rome_core.trace import SequenceTrace, run_with_trace
from rome_tui.app import RomeApp
from rome_tui.commands import RomeCommands
from rome_tui.screens.error import ErrorScreen
from rome_tui.screens.settings import SettingsScreen
from rome_tui.widgets.attention_heatmap import AttentionHeatmap
from rome_tui.widgets.chat_log import MessageView
from rome_tui.widgets.loss_chart import LossChart
from rome_tui.widgets.prompt_input import PromptInput
from rome_tui.widgets.token_strip import TokenStrip
from rome_tui.widgets.topk_panel import TopKPanel
from rome_tui.widgets.training_dashboard import TrainingDashboard

SETTINGS = SamplingSettings(temperature=0.8, top_k=40, top_p=0.95, max_tokens=12, seed=7)


async def settle(app, pilot) -> None:
    await app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.pause()


async def send(app, pilot, text: str) -> None:
    prompt = app.query_one(PromptInput)
    prompt.text = text
    prompt.focus()
    await pilot.press("enter")
    await settle(app, pilot)


def reference_steps(loaded, ids, settings):
    """The same generation outside the app: steps and the assembled trace."""
    generator = Generator(loaded.model, loaded.tokenizer)
    steps = list(generator.stream(ids, settings, trace=True))
    trace = SequenceTrace(loaded.model.config.n_layers)
    for step in steps:
        trace.add(step.trace, step.positions, step.window_start)
    return steps, trace


async def test_token_strip_shows_prompt_tokens(tiny_checkpoint, tiny_loaded):
    app = RomeApp(tiny_checkpoint, SETTINGS)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await send(app, pilot, "who is caesar?")
        strip = app.query_one(TokenStrip)
        encoding = tiny_loaded.tokenizer.encode("who is caesar?")
        prompt_chips = strip.chips[: len(encoding.tokens)]
        assert [chip.id for chip in prompt_chips] == encoding.ids
        assert [chip.text for chip in prompt_chips] == [token.text for token in encoding.tokens]
        assert not any(chip.generated for chip in prompt_chips)
        assert all(chip.generated for chip in strip.chips[len(encoding.tokens) :])
        assert len(strip.chips) > len(encoding.tokens)
        rendered = strip.render().plain
        for token in encoding.tokens:
            assert f"{token.text.replace(' ', '·')} {token.id}" in rendered


async def test_reply_matches_generator(tiny_checkpoint, tiny_loaded):
    app = RomeApp(tiny_checkpoint, SETTINGS)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await send(app, pilot, "who is caesar?")
        ids = tiny_loaded.tokenizer.encode_ids("who is caesar?")
        steps, _ = reference_steps(tiny_loaded, ids, SETTINGS)
        generated = [chip.id for chip in app.conversation.chips[len(ids) :]]
        assert generated == [step.token.id for step in steps]
        reply = app.query(MessageView).last()
        assert "".join(step.token.text for step in steps) in reply.content.plain


async def test_selection_drives_heatmap_and_topk(tiny_checkpoint, tiny_loaded):
    app = RomeApp(tiny_checkpoint, SETTINGS)
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(app, pilot)
        await send(app, pilot, "who is caesar?")
        conversation = app.conversation
        ids = tiny_loaded.tokenizer.encode_ids("who is caesar?")
        steps, trace = reference_steps(tiny_loaded, ids, SETTINGS)

        strip = app.query_one(TokenStrip)
        strip.focus()
        await pilot.press("home", "right", "right")
        await pilot.pause()
        assert strip.selected == 2
        heatmap = app.query_one(AttentionHeatmap)
        assert heatmap.selected == 2
        assert 2 in heatmap.drawn_queries

        # The heatmap draws the weights the generation traced (layer 1, head 1).
        pattern = trace.get("blocks.0.attn.hook_pattern")[0, 0]
        drawn = torch.tensor(heatmap.drawn_grid)
        queries, keys = heatmap.drawn_queries, heatmap.drawn_keys
        expected = pattern[queries.start : queries.stop, keys.start : keys.stop]
        assert torch.allclose(drawn, expected, atol=1e-6)
        # ... which match a from-scratch forward pass over the same tokens.
        fresh = run_with_trace(tiny_loaded.model, conversation.ids[: trace.length])["blocks.0.attn.hook_pattern"][0, 0]
        assert torch.allclose(drawn, fresh[queries.start : queries.stop, keys.start : keys.stop], atol=1e-5)

        # Layer and head keys change what is drawn.
        await pilot.press("l", "h")
        await pilot.pause()
        assert heatmap.layer_index == 1
        assert heatmap.head_index == 1
        drawn = torch.tensor(heatmap.drawn_grid)
        expected = trace.get("blocks.1.attn.hook_pattern")[0, 1, queries.start : queries.stop, keys.start : keys.stop]
        assert torch.allclose(drawn, expected, atol=1e-6)
        await pilot.press("a")
        await pilot.pause()
        assert heatmap.head_index is None
        mean = trace.get("blocks.1.attn.hook_pattern")[0].mean(dim=0)
        assert torch.allclose(torch.tensor(heatmap.drawn_grid), mean[queries.start : queries.stop, keys.start : keys.stop], atol=1e-6)

        # A prompt position: candidates are the softmax of the traced logits one position earlier.
        topk = app.query_one(TopKPanel)
        assert topk.selected == 2
        probs = torch.softmax(trace.get("logits")[0, 1], dim=-1)
        top = torch.topk(probs, len(topk.rows))
        chosen = [row for row in topk.rows if row.chosen]
        assert [row.id for row in topk.rows if not row.chosen or row.id in top.indices.tolist()][: 3] == top.indices.tolist()[:3]
        assert chosen[0].id == ids[2]
        assert chosen[0].prob == pytest.approx(float(probs[ids[2]]), abs=1e-6)

        # A generated position: the generator's candidates, with the sampled token marked and the kept count.
        generated = len(ids) + 1
        await pilot.press("right")
        for _ in range(generated - 3):
            await pilot.press("right")
        await pilot.pause()
        assert topk.selected == generated
        step = steps[1]
        assert [row.id for row in topk.rows][:3] == [c.id for c in step.candidates][:3]
        assert [row for row in topk.rows if row.chosen][0].id == step.token.id
        assert f"kept {step.kept} of" in topk.render().plain
        assert topk.rows[0].prob == pytest.approx(float(torch.softmax(trace.get("logits")[0, generated - 1], -1).max()), abs=1e-6)


async def test_click_selects_token(tiny_checkpoint):
    app = RomeApp(tiny_checkpoint, SETTINGS)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await send(app, pilot, "who is caesar?")
        strip = app.query_one(TokenStrip)
        placed = strip._lay_out(strip.size.width)[1]
        await pilot.click(TokenStrip, offset=(placed.x + 1, placed.row))
        await pilot.pause()
        assert strip.selected == 1
        assert app.query_one(TopKPanel).selected == 1


async def test_escape_stops_reply(tiny_checkpoint):
    endless = SamplingSettings(temperature=0.8, top_k=40, top_p=0.95, max_tokens=1_000_000, seed=1)
    app = RomeApp(tiny_checkpoint, endless)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        prompt = app.query_one(PromptInput)
        prompt.text = "the senate"
        await pilot.press("enter", "escape")
        await settle(app, pilot)
        reply = app.conversation.turns[-1]
        assert reply.role == "model"
        assert reply.finish_reason == "cancelled"
        assert reply.end - reply.start < 1_000_000
        assert "stopped" in app.query(MessageView).last().content.plain

        # A new message works at once.
        app.settings = SETTINGS
        await send(app, pilot, "the legions")
        assert [turn.role for turn in app.conversation.turns] == ["user", "model", "user", "model"]
        assert app.conversation.turns[-1].finish_reason in ("max_tokens", "end_of_text")


async def test_markup_and_emoji_input(tiny_checkpoint, tiny_loaded):
    text = "[0] hello [/ [bold]Rome[/bold] 🏛️ é"
    app = RomeApp(tiny_checkpoint, SETTINGS)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await send(app, pilot, text)
        user = app.query(MessageView).first()
        shown = user.content.plain
        assert text.lower() in shown
        assert "lowercased" in shown
        encoding = tiny_loaded.tokenizer.encode(text)
        chips = app.conversation.chips[: len(encoding.tokens)]
        unknown = [chip for chip in chips if chip.unknown]
        assert unknown
        assert any("🏛" in chip.source for chip in unknown)
        assert "[UNK]=" in app.query_one(TokenStrip).render().plain


async def test_long_paste_slides_window(tiny_checkpoint, tiny_loaded):
    paste = ("the legions marched to gaul and the senate met in rome. " * 1800)[:100_000]
    app = RomeApp(tiny_checkpoint, SETTINGS)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        prompt = app.query_one(PromptInput)
        prompt.focus()
        app.post_message(events.Paste(paste))
        await pilot.pause()
        assert prompt.text == paste
        await pilot.press("enter")
        await settle(app, pilot)
        conversation = app.conversation
        context = tiny_loaded.model.config.context_length
        assert conversation.window_start > 0
        assert conversation.slid
        strip = app.query_one(TokenStrip)
        assert strip.start == conversation.window_start
        assert len(strip.chips) <= context + 1
        notes = " ".join(str(note.content) for note in app.query(".note"))
        assert f"{context}-token context" in notes
        assert "characters not shown" in app.query(MessageView).first().content.plain


async def test_settings_modal_rejects_invalid(tiny_checkpoint):
    app = RomeApp(tiny_checkpoint, SETTINGS)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("f2")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, SettingsScreen)
        screen.query_one("#temperature").value = "warm"
        await pilot.click("#apply")
        await pilot.pause()
        assert isinstance(app.screen, SettingsScreen)
        assert "invalid temperature 'warm'" in str(screen.query_one("#settings-error").content)
        screen.query_one("#temperature").value = "0"
        screen.query_one("#top_p").value = "1.5"
        screen.query_one("#top_p").focus()
        await pilot.press("enter")
        await pilot.pause()
        assert "invalid top-p 1.5" in str(screen.query_one("#settings-error").content)
        screen.query_one("#top_p").value = "0.9"
        screen.query_one("#seed").value = ""
        await pilot.press("enter")
        await pilot.pause()
        assert not isinstance(app.screen, SettingsScreen)
        assert app.settings.temperature == 0.0
        assert app.settings.top_p == 0.9
        assert app.settings.seed is None
        assert "temp 0 " in str(app.query_one("#status-bar").content)


def write_lines(path: Path, records: list[dict], partial: str = "") -> None:
    with open(path, "a", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
        handle.write(partial)


async def test_training_tab_follows_metrics(tiny_checkpoint, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    metrics = run / "metrics.jsonl"
    write_lines(metrics, [{"event": "start", "step": 0, "tokens": 0, "total_steps": 100}])
    app = RomeApp(tiny_checkpoint, SETTINGS)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("ctrl+t")
        assert app.query_one("#tabs").active == "training"
        app.open_run(run)
        dashboard = app.query_one(TrainingDashboard)
        await pilot.pause()
        assert dashboard.history.train_steps == []
        assert "no run open" not in str(dashboard.query_one("#run-title").content)

        train = {"event": "train", "step": 10, "tokens": 100, "train_loss": 5.5, "lr": 1e-3, "tokens_per_s": 50.0, "elapsed_s": 2.0, "total_steps": 100}
        partial = json.dumps({**train, "step": 20, "train_loss": 4.5})
        write_lines(metrics, [train], partial=partial[:25])
        dashboard.poll()
        await pilot.pause()
        assert dashboard.history.train_steps == [10]
        assert dashboard.history.train_losses == [5.5]
        assert "10 / 100" in str(dashboard.query_one("#run-stats").content)

        write_lines(metrics, [], partial=partial[25:] + "\n")
        write_lines(metrics, [
            {**train, "step": 30, "train_loss": None},
            {"event": "eval", "step": 30, "tokens": 300, "elapsed_s": 6.0, "val_loss": 4.2, "bpc": 1.0, "sample": "the senate met",
             "probe_prompt": "the senate and the people of", "probe": [{"token": " rome", "prob": 0.5}]},
            {"event": "resume", "step": 30, "tokens": 300, "total_steps": 100},
        ])
        dashboard.poll()
        await pilot.pause()
        history = dashboard.history
        assert history.train_steps == [10, 20]
        assert history.val_losses == [4.2]
        assert history.skipped == 1
        assert history.resumes == [30]
        assert "' rome'" in str(dashboard.query_one("#run-probe").content)
        assert "the senate met" in str(dashboard.query_one("#run-sample").content)
        assert "1 null/NaN losses not plotted" in str(dashboard.query_one("#run-stats").content)
        assert app.query_one(LossChart).history is history

        write_lines(metrics, [{"event": "end", "step": 100, "tokens": 1000, "elapsed_s": 20.0}])
        dashboard.poll()
        await pilot.pause()
        assert "finished" in str(dashboard.query_one("#run-title").content)


async def test_training_tab_without_metrics(tiny_checkpoint, tmp_path):
    empty = tmp_path / "empty-run"
    empty.mkdir()
    app = RomeApp(tiny_checkpoint, SETTINGS)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        # With no run open, the tab follows the checkpoint's own training record.
        dashboard = app.query_one(TrainingDashboard)
        assert dashboard.history.train_steps
        app.open_run(empty)
        await pilot.pause()
        assert "no metrics" in str(dashboard.query_one("#run-title").content)
        (empty / "metrics.jsonl").write_text("", encoding="utf-8")
        dashboard.poll(force=True)
        await pilot.pause()
        assert "metrics.jsonl is empty" in str(dashboard.query_one("#run-title").content)


async def test_broken_checkpoint_shows_error(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json", encoding="utf-8")
    app = RomeApp(broken)
    async with app.run_test(size=(80, 24)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert isinstance(app.screen, ErrorScreen)
        message = str(app.screen.query_one("#error-message").content)
        assert "config.json: not valid JSON" in message
        assert "romegpt --checkpoint PATH" in message
        await pilot.press("q")
    assert app.return_code == 0


async def test_missing_checkpoint_shows_error(tmp_path):
    app = RomeApp(tmp_path / "nowhere")
    async with app.run_test(size=(80, 24)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert isinstance(app.screen, ErrorScreen)
        assert "checkpoint folder not found" in str(app.screen.query_one("#error-message").content)


@pytest.mark.parametrize("size", [(80, 24), (60, 16), (30, 10)])
async def test_small_terminals(tiny_checkpoint, size):
    app = RomeApp(tiny_checkpoint, SETTINGS)
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        await send(app, pilot, "who is caesar?")
        for widget in (TokenStrip, AttentionHeatmap, TopKPanel, PromptInput):
            region = app.query_one(widget).region
            assert region.right <= size[0]
        if size == (80, 24):
            for widget in (AttentionHeatmap, TopKPanel, PromptInput):
                assert app.query_one(widget).region.height >= 3
            assert app.query_one(AttentionHeatmap).drawn_grid
        await pilot.press("ctrl+t", "ctrl+t", "ctrl+t", "f1")
        await pilot.pause()


async def test_save_copy_and_export(tiny_checkpoint, tiny_loaded, tmp_path):
    app = RomeApp(tiny_checkpoint, SETTINGS)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await send(app, pilot, "who is Caesar?")
        transcript = app.conversation.transcript()
        assert transcript.startswith("you: who is caesar?\n\nromegpt: ")

        app.action_copy_conversation()
        assert app.clipboard == transcript

        await pilot.press("f3")
        await pilot.pause()
        target = tmp_path / "chat.txt"
        app.screen.query_one("#path-input").value = str(target)
        await pilot.press("enter")
        await pilot.pause()
        assert target.read_text(encoding="utf-8") == transcript

        await pilot.press("f5")
        await pilot.pause()
        exported = tmp_path / "trace.json"
        app.screen.query_one("#path-input").value = str(exported)
        await pilot.press("enter")
        await settle(app, pilot)
        document = json.loads(exported.read_text(encoding="utf-8"))
        trace = app.conversation.trace
        assert document["token_ids"] == app.conversation.ids[: trace.length]
        assert [token["text"] for token in document["tokens"]] == [chip.text for chip in app.conversation.chips[: trace.length]]
        config = tiny_loaded.model.config
        assert len(document["attention"]) == config.n_layers
        assert len(document["attention"][0]) == config.n_heads
        pattern = trace.get("blocks.0.attn.hook_pattern")[0, 0]
        assert document["attention"][0][0][3] == pytest.approx(pattern[3, :4].tolist(), abs=1e-5)
        assert len(document["top_k"]) == trace.length
        top = torch.topk(torch.softmax(trace.get("logits")[0, 0], -1), 1)
        assert document["top_k"][0][0]["id"] == int(top.indices[0])


async def test_command_palette_lists_actions(tiny_checkpoint):
    app = RomeApp(tiny_checkpoint, SETTINGS)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        provider = RomeCommands(app.screen)
        names = [str(hit.display) async for hit in provider.discover()]
        for name in ("Sampling settings", "Export trace as JSON", "Save conversation", "Open run folder", "Start training run"):
            assert name in names
        hits = [hit async for hit in provider.search("greedy")]
        assert hits
        hits[0].command()
        assert app.settings.temperature == 0.0
