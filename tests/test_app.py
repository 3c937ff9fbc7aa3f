"""The Textual app driven through its Pilot on the real tiny checkpoint."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest
import torch
from textual import events

from rome_core.explain import explain_trace, trace_prompt
from rome_core.generate import Candidate, Generator, SamplingSettings, Step
from rome_core.metrics import smoothed
from rome_core.trace import SequenceTrace, run_with_trace
from rome_tui.app import RomeApp
from rome_tui.commands import RomeCommands
from rome_tui.conversation import Conversation
from rome_tui.screens.confirm import ConfirmScreen
from rome_tui.screens.error import ErrorScreen
from rome_tui.screens.help import HelpScreen
from rome_tui.screens.path_prompt import PathPrompt
from rome_tui.screens.settings import SettingsScreen
from rome_tui.screens.train_form import TrainFormScreen, TrainRequest, parse_request
from rome_tui.widgets.inside import InsideView
from rome_tui.widgets.loss_chart import step_ticks
from rome_tui.widgets.attention_heatmap import AttentionHeatmap
from rome_tui.widgets.chat_log import MessageView
from rome_tui.widgets.loss_chart import LossChart
from rome_tui.widgets.prompt_input import PromptInput
from rome_tui.widgets.token_strip import TokenStrip
from rome_tui.widgets.topk_panel import TopKPanel, row_layout
from rome_tui.widgets.training_dashboard import TrainingDashboard

SETTINGS = SamplingSettings(temperature=0.8, top_k=40, top_p=0.95, max_tokens=12, seed=7)


def screen_text(app) -> str:
    """Return the text on screen, from the app's own SVG screenshot."""
    svg = app.export_screenshot()
    return html.unescape(re.sub(r"<[^>]+>", "", svg)).replace("\xa0", " ")


async def settle(app, pilot) -> None:
    # Twice: the last redraw of a reply is on a timer and may start the Inside view's worker.
    for _ in range(2):
        await app.workers.wait_for_complete()
        await pilot.pause()
    await pilot.pause()


async def send(app, pilot, text: str) -> None:
    prompt = app.query_one(PromptInput)
    prompt.text = text
    prompt.focus()
    await pilot.press("enter")
    await settle(app, pilot)


def notifications(app) -> list[str]:
    return [notification.message for notification in app._notifications]


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


async def test_settings_modal(tiny_checkpoint):
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
        assert app.settings.allow_unknown is False

        # The checkbox lets sampling pick [UNK], and the status bar shows it.
        await pilot.press("f2")
        await pilot.pause()
        assert "[UNK]" in str(app.screen.query_one("#allow_unknown").label)
        await pilot.click("#allow_unknown")
        await pilot.click("#apply")
        await pilot.pause()
        assert not isinstance(app.screen, SettingsScreen)
        assert app.settings.allow_unknown is True
        assert app.settings.temperature == 0.0  # the other settings are kept
        assert "[UNK] allowed" in str(app.query_one("#status-bar").content)


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
        assert "10/100" in str(dashboard.query_one("#run-stats").content)

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
        assert "null/NaN losses: 1" in str(dashboard.query_one("#run-stats").content)
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
    assert app.return_code == 2


async def test_missing_checkpoint_shows_error(tmp_path):
    app = RomeApp(tmp_path / "nowhere")
    async with app.run_test(size=(80, 24)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert isinstance(app.screen, ErrorScreen)
        assert "checkpoint folder not found" in str(app.screen.query_one("#error-message").content)
        keys = set(app.screen.active_bindings)
        assert "f2" not in keys
        assert "ctrl+t" not in keys
        assert "q" in keys
        await pilot.press("f2")
        await pilot.pause()
        assert isinstance(app.screen, ErrorScreen)
        await pilot.press("ctrl+q")
    assert app.return_code == 2


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
        assert transcript.startswith("you (the model read it lowercased): who is Caesar?\n\nromegpt: ")

        app.action_copy_conversation()
        assert app.clipboard == transcript

        await pilot.press("f3")
        await pilot.pause()
        target = tmp_path / "chat.txt"
        app.screen.query_one("#path-input").value = str(target)
        await pilot.press("enter")
        await pilot.pause()
        assert target.read_text(encoding="utf-8") == transcript
        assert f"Conversation saved to {target}." in notifications(app)

        await pilot.press("f5")
        await pilot.pause()
        exported = tmp_path / "trace.json"
        app.screen.query_one("#path-input").value = str(exported)
        await pilot.press("enter")
        await settle(app, pilot)
        assert f"Trace exported to {exported}." in notifications(app)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["chat.txt", "trace.json"]  # no partial file left
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


def prompt_focused(app) -> bool:
    return app.focused is app.query_one(PromptInput)


async def test_focus_returns_to_message_box(tiny_checkpoint):
    app = RomeApp(tiny_checkpoint, SETTINGS)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await send(app, pilot, "who is caesar?")
        assert prompt_focused(app)
        prompt = app.query_one(PromptInput)
        assert prompt.styles.border_top[0] == "thick"

        app.query_one(TokenStrip).focus()
        await pilot.pause()
        assert prompt.styles.border_top[0] == "round"
        await pilot.press("escape")
        await pilot.pause()
        assert prompt_focused(app)

        # Every modal gives the focus back to the message box when it closes, wherever it was before.
        for key, modal in (("f2", SettingsScreen), ("f1", HelpScreen), ("f3", PathPrompt), ("ctrl+o", PathPrompt), ("ctrl+n", TrainFormScreen)):
            app.query_one(TokenStrip).focus()
            await pilot.press(key)
            await pilot.pause()
            assert isinstance(app.screen, modal), key
            await pilot.press("escape")
            await pilot.pause()
            await pilot.pause()
            assert prompt_focused(app), key

        heatmap = app.query_one(AttentionHeatmap)
        await pilot.press("l", "a", "h")
        await pilot.pause()
        assert prompt.text == "lah"
        assert heatmap.layer_index == 0
        assert heatmap.head_index == 0


async def test_inside_tab_keys_work_at_once(tiny_checkpoint):
    app = RomeApp(tiny_checkpoint, SETTINGS)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await send(app, pilot, "who is caesar?")
        await pilot.press("ctrl+t", "ctrl+t")
        await settle(app, pilot)
        view = app.query_one(InsideView)
        assert app.query_one("#tabs").active == "inside"
        assert app.focused is view
        keys = set(app.screen.active_bindings)
        assert {"n", "p", "comma", "full_stop"} <= keys
        assert "escape" not in keys
        await pilot.press("n", "]")
        await pilot.pause()
        assert view.stage == 2
        await pilot.press("5")
        await pilot.pause()
        assert view.stage == 4

        # Clicking the tab works the same way.
        await pilot.click("#--content-tab-chat")
        await pilot.pause()
        assert prompt_focused(app)
        await pilot.click("#--content-tab-inside")
        await pilot.pause()
        await pilot.pause()
        assert app.focused is view
        await pilot.press("p")
        await pilot.pause()
        assert view.stage == 3


async def test_inside_commands_and_help(tiny_checkpoint):
    app = RomeApp(tiny_checkpoint, SETTINGS)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        provider = RomeCommands(app.screen)
        hits = {str(hit.display): hit async for hit in provider.discover()}
        for name in ("Inside: next stage", "Inside: previous token", "Inside: Tokenization", "Inside: Final linear layer"):
            assert name in hits
        hits["Inside: Final linear layer"].command()
        await pilot.pause()
        assert app.query_one("#tabs").active == "inside"
        assert app.query_one(InsideView).stage == 5

        await pilot.press("f1")
        await pilot.pause()
        help_text = app.screen.query_one("Markdown").source
        assert "## Inside" in help_text
        assert "| n or ] / p or [ | next / previous stage |" in help_text


async def test_inside_shows_typed_text(tiny_checkpoint):
    app = RomeApp(tiny_checkpoint, SETTINGS)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await send(app, pilot, "Who is Caesar?")
        await settle(app, pilot)
        view = app.query_one(InsideView)
        assert view.explanation is not None
        lowercase = view.explanation.lowercase
        assert lowercase.typed.startswith("Who is Caesar?")
        assert lowercase.seen.startswith("who is caesar?")
        assert [change.typed_index for change in lowercase.changes] == [0, 7]


def test_conversation_text_keeps_typed(tiny_loaded):
    conversation = Conversation(tiny_loaded.tokenizer, tiny_loaded.model.config.n_layers, 10_000)
    conversation.add_user_message("Who is Caesar?")
    conversation.start_reply()
    conversation.add_user_message("The SENATE")
    assert conversation.text_from() == "Who is Caesar?\n\nThe SENATE"
    assert conversation.transcript() == (
        "you (the model read it lowercased): Who is Caesar?\n\nromegpt: \n\nyou (the model read it lowercased): The SENATE\n"
    )
    # The model reads the lowercased text, and the first token carries the dummy-prefix space.
    assert conversation.chips[0].text == tiny_loaded.tokenizer.encode("who is caesar?").tokens[0].text
    assert "".join(chip.source for chip in conversation.chips) == "who is caesar?\n\nthe senate"


# 60 reply tokens fill more rows of the strip than an 80x24 terminal shows.
LONG_REPLY = SamplingSettings(temperature=0.8, top_k=40, top_p=0.95, max_tokens=60, seed=7)


def selected_chip_in_view(strip, scroll) -> bool:
    row = strip._placed(strip.selected).row
    return scroll.scroll_y <= row < scroll.scroll_y + scroll.scrollable_content_region.height


async def test_token_strip_scrolls_to_selection(tiny_checkpoint):
    app = RomeApp(tiny_checkpoint, LONG_REPLY)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await send(app, pilot, "who is caesar?")
        scroll = app.query_one("#strip-scroll")
        assert scroll.max_scroll_y > 0
        strip = app.query_one(TokenStrip)
        strip.focus()
        await pilot.press("home")
        await settle(app, pilot)
        await pilot.wait_for_scheduled_animations()
        assert scroll.scroll_y == 0
        await pilot.press("end")
        await settle(app, pilot)
        await pilot.wait_for_scheduled_animations()
        assert scroll.scroll_y == scroll.max_scroll_y
        await pilot.press("home")
        await settle(app, pilot)
        await pilot.wait_for_scheduled_animations()
        assert scroll.scroll_y == 0

        # After a resize rewraps the chips, the selected one is scrolled back into view.
        await pilot.press("end", "left", "left")
        await settle(app, pilot)
        await pilot.wait_for_scheduled_animations()
        await pilot.resize_terminal(60, 24)
        await settle(app, pilot)
        await pilot.wait_for_scheduled_animations()
        assert selected_chip_in_view(strip, scroll)

        # A token chosen on the Inside tab is in view when the Chat tab comes back.
        await pilot.press("home")
        await settle(app, pilot)
        app.show_tab("inside")
        await settle(app, pilot)
        app.query_one(InsideView).focus()
        await pilot.press("end")
        await settle(app, pilot)
        app.show_tab("chat")
        await settle(app, pilot)
        await pilot.wait_for_scheduled_animations()
        assert strip.selected == len(app.conversation.chips) - 1
        assert selected_chip_in_view(strip, scroll)


async def test_inside_chat_numbering_after_slide(tiny_checkpoint):
    settings = SamplingSettings(temperature=0.8, top_k=40, top_p=0.95, max_tokens=30, seed=7)
    app = RomeApp(tiny_checkpoint, settings)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await send(app, pilot, "the senate and the people of rome met in the forum. " * 4)
        conversation = app.conversation
        assert conversation.window_start > 0  # the tiny model's 64-token window has slid
        strip = app.query_one(TokenStrip)
        strip.focus()
        await pilot.press("end", "left", "left")
        await settle(app, pilot)
        position = strip.selected
        view = app.query_one(InsideView)
        assert view.explanation.selected.index == position
        assert view.explanation.selected.id == conversation.chips[position].id
        app.show_tab("inside")
        await settle(app, pilot)
        view.focus()
        await pilot.press("comma")
        await settle(app, pilot)
        assert strip.selected == position - 1 == view.explanation.selected.index


async def test_heatmap_and_candidates_same_token(tiny_checkpoint):
    app = RomeApp(tiny_checkpoint, SETTINGS)
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(app, pilot)
        await send(app, pilot, "who is caesar?")
        strip = app.query_one(TokenStrip)
        strip.focus()
        await pilot.press("home", "right", "right", "right", "right", "right")
        await pilot.pause()
        heatmap = app.query_one(AttentionHeatmap)
        topk = app.query_one(TopKPanel)
        assert heatmap.drawn_position == strip.selected == topk.selected == 5
        assert "▶ 5 '" in heatmap.render().plain
        candidates = topk.render().plain
        assert "Candidates for token 5 " in candidates
        assert "predicted at token 4" in candidates
        assert "▶ sampled" in candidates

        await pilot.press("home", "right")
        await pilot.pause()
        assert "▶ your token" in topk.render().plain


async def test_narrow_status_and_footer(tiny_checkpoint):
    app = RomeApp(tiny_checkpoint, SETTINGS)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        status = str(app.query_one("#status-bar").content)
        assert "seed 7" in status
        assert len(status) <= 78
        assert "escape" in app.screen.active_bindings
        for tab in ("training", "inside"):
            app.show_tab(tab)
            await pilot.pause()
            assert "escape" not in app.screen.active_bindings, tab


def test_loss_chart_ticks_are_whole_steps():
    assert step_ticks(5, 40, 6) == [10, 20, 30, 40]
    assert step_ticks(0, 1, 6) == [0, 1]
    assert step_ticks(3.5, 7.2, 10) == [4, 5, 6, 7]
    assert step_ticks(0, 12_345, 7) == [0, 2000, 4000, 6000, 8000, 10000, 12000]
    assert step_ticks(10, 1890, 2) == [1000]


async def test_open_run_without_metrics_keeps_chart(tiny_checkpoint, tmp_path):
    empty = tmp_path / "not-a-run"
    empty.mkdir()
    app = RomeApp(tiny_checkpoint, SETTINGS)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        dashboard = app.query_one(TrainingDashboard)
        before = dashboard.folder
        history = dashboard.history
        await pilot.press("ctrl+o")
        await pilot.pause()
        app.screen.query_one("#path-input").value = str(empty)
        await pilot.press("enter")
        await pilot.pause()
        assert f"No metrics.jsonl in {empty}; choose a run folder made by `romegpt train`." in notifications(app)
        assert dashboard.folder == before
        assert dashboard.history is history


def test_train_form_checks_existing_run(tiny_run, sample_corpus_dir, tmp_path):
    data = str(sample_corpus_dir)
    taken = parse_request(data, str(tiny_run), "tiny", "500")
    assert taken == f"out folder {tiny_run} already holds a training run; tick resume to continue it, or choose another folder"
    resumed = parse_request(data, str(tiny_run), "tiny", "500", resume=True)
    assert resumed == TrainRequest(sample_corpus_dir, tiny_run, "tiny", 500, resume=True)
    assert "is already at step" in parse_request(data, str(tiny_run), "tiny", "1", resume=True)
    nothing = parse_request(data, str(tmp_path / "new"), "tiny", "50", resume=True)
    assert nothing.startswith(f"nothing to resume in {tmp_path / 'new'}")
    assert parse_request(data, str(tmp_path / "new"), "tiny", "50") == TrainRequest(sample_corpus_dir, tmp_path / "new", "tiny", 50)


async def test_training_stop_and_quit_confirmation(tiny_checkpoint, sample_corpus_dir, tmp_path):
    out = tmp_path / "app-run"
    app = RomeApp(tiny_checkpoint, SETTINGS)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("ctrl+n")
        await pilot.pause()
        form = app.screen
        form.query_one("#train-data").value = str(sample_corpus_dir)
        form.query_one("#train-out").value = str(out)
        form.query_one("#train-steps").value = "100000"
        form.query_one("#train-steps").focus()
        await pilot.press("enter")
        await pilot.pause()
        assert app.training is not None
        process = app.training

        await pilot.press("ctrl+q")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
        assert process.returncode is None

        await pilot.press("f8")
        await settle(app, pilot)
        while app.training is not None:
            await pilot.pause(0.2)
        dashboard = app.query_one(TrainingDashboard)
        title = str(dashboard.query_one("#run-title").content)
        assert "stopped by you (F8)" in title
        assert "exit code" not in title
        assert "ETA         -" in str(dashboard.query_one("#run-stats").content)


def test_inside_view_chat_tokens(tiny_loaded):
    """A reply generated letter by letter must reach the Inside view as the same tokens, not re-merged."""
    tokenizer = tiny_loaded.tokenizer
    conversation = Conversation(tokenizer, tiny_loaded.model.config.n_layers, 10_000)
    conversation.add_user_message("The SENATE")
    conversation.start_reply()
    settings = SamplingSettings()
    letters = [tokenizer.encode_ids(letter, start_of_text=False)[0] for letter in " the"]
    for index, token_id in enumerate([*letters, tokenizer.unk_id]):
        candidate = Candidate(id=token_id, text=tokenizer.id_to_token(token_id), prob=0.5, sample_prob=0.5)
        position = len(conversation.chips)
        step = Step(index, candidate, [candidate], 1, 0, range(position, position + 1), False)
        conversation.add_step(step, settings)

    text = conversation.text_from()
    assert tokenizer.encode_ids(text) != conversation.ids  # a fresh tokenization merges " the"
    prompt = trace_prompt(tiny_loaded, text, conversation.encoding_from())
    assert prompt.ids == conversation.ids
    explanation = explain_trace(tiny_loaded, prompt)
    assert [token.id for token in explanation.tokenization.tokens] == conversation.ids
    assert explanation.lowercase.seen == "the senate the[UNK]"
    assert explanation.tokenization.tokens[-1].unknown  # a generated [UNK] stays one unknown token


def test_smoothed_loss_values():
    assert smoothed([4.0, 2.0], 0.0) == [4.0, 2.0]
    # Debiased: the first point is the value itself, the second leans towards the first.
    assert smoothed([4.0, 2.0], 0.5) == pytest.approx([4.0, (0.25 * 4.0 + 0.5 * 2.0) / 0.75])
    with pytest.raises(ValueError, match="invalid smoothing weight 1"):
        smoothed([1.0], 1.0)


async def test_live_run_chart_vocabulary(tiny_checkpoint, tmp_path):
    folder = tmp_path / "live"
    folder.mkdir()  # no checkpoint yet, so no config.json: only the start record has the vocabulary
    write_lines(folder / "metrics.jsonl", [{"event": "start", "step": 0, "vocab_size": 604}, {"event": "train", "step": 1, "train_loss": 6.0}])
    app = RomeApp(tiny_checkpoint, SamplingSettings())
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        app.open_run(folder)
        await settle(app, pilot)
        assert app.query_one(LossChart).vocab_size == 604


async def test_f6_smooths_loss_chart(tiny_checkpoint, tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    losses = [8.0, 6.0, 7.0, 5.0, 6.0, 4.0]
    with open(folder / "metrics.jsonl", "w", encoding="utf-8") as handle:
        for step, loss in enumerate(losses, start=1):
            handle.write(json.dumps({"event": "train", "step": step, "train_loss": loss}) + "\n")
    app = RomeApp(tiny_checkpoint, SamplingSettings())
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        app.open_run(folder)
        await settle(app, pilot)
        chart = app.query_one(LossChart)
        assert chart.smoothing == 0.0
        await pilot.press("f6")
        await settle(app, pilot)
        assert chart.smoothing == 0.6
        plotted = chart.plt._active.monitor  # plotext's record of the lines it draws
        assert plotted.label[0] == "train (EMA 0.6)"
        assert plotted.y[0] == pytest.approx(smoothed(losses, 0.6))
        assert plotted.y[0] != pytest.approx(losses)
        # At 120 columns the long title does not fit, and plotext would drop it: a shorter one shows.
        assert "untrained" in screen_text(app)
        for _ in range(3):
            await pilot.press("f6")
        await settle(app, pilot)
        assert chart.smoothing == 0.0


@pytest.mark.parametrize("panel_width", [18, 22, 26, 30, 40, 60])
@pytest.mark.parametrize("sampled", [False, True])
def test_candidate_rows_fit_panel(panel_width, sampled):
    label_width, bar_width = row_layout(panel_width, sampled)
    row_width = 1 + label_width + 1 + bar_width + 7 + (7 if sampled else 0)
    assert row_width <= panel_width or bar_width == 0
    assert label_width >= 5
