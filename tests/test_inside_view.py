"""The Inside view widget, mounted in a minimal app with the tiny model and driven by Textual's Pilot."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from textual.app import App, ComposeResult
from textual.containers import VerticalScroll
from textual.geometry import Region
from textual.widget import Widget
from textual.widgets import Footer, Static, TabbedContent, TabPane
from textual.worker import WorkerCancelled

from rome_core.checkpoint import LoadedModel
from rome_core.config import ModelConfig
from rome_core.model import RomeGPT
from rome_tui.explain_render import STAGES
from rome_tui.messages import TokenSelected
from rome_tui.widgets.inside import InsideView

PROMPT = "Who is Caesar? The senate of Rome"
CSS = Path(__file__).resolve().parent.parent / "rome_tui" / "inside.tcss"


class InsideApp(App):
    """The Inside view in a tab, under a tab bar and over a footer, as the RomeGPT app shows it."""

    CSS_PATH = CSS
    CSS = "TabPane { padding: 0; }"

    def __init__(self, loaded: LoadedModel) -> None:
        super().__init__()
        self.loaded = loaded
        self.selected: list[int] = []

    def compose(self) -> ComposeResult:
        with TabbedContent():
            with TabPane("Inside"):
                yield InsideView(self.loaded, id="inside")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(InsideView).focus()

    def on_token_selected(self, message: TokenSelected) -> None:
        self.selected.append(message.position)


@pytest.fixture(scope="module")
def full_size_loaded(tiny_loaded) -> LoadedModel:
    """An untrained model of the shipped shape (6 layers, 8 heads, width 512) with the tiny tokenizer."""
    torch.manual_seed(0)
    config = replace(ModelConfig(), vocab_size=tiny_loaded.tokenizer.vocab_size)
    model = RomeGPT(config).eval()
    return LoadedModel(model=model, tokenizer=tiny_loaded.tokenizer, card={}, path=Path("untrained"))


def widget_text(widget: Widget) -> str:
    """Return the text a widget draws, one line per row (colours dropped)."""
    lines = widget.render_lines(Region(0, 0, widget.size.width, widget.size.height))
    return "\n".join(line.text for line in lines)


def stage_text(app: App) -> str:
    return widget_text(app.query_one("#inside-stage", Static))


async def settle(app: App, pilot) -> None:
    """Wait until every explanation worker has finished or been cancelled, then for the screen to update."""
    for worker in list(app.workers):
        try:
            await worker.wait()
        except WorkerCancelled:
            pass
    await pilot.pause()


async def show(app: App, pilot, text: str, position: int | None = None) -> InsideView:
    view = app.query_one(InsideView)
    view.update_prompt(text, position)
    await settle(app, pilot)
    return view


async def test_update_prompt_shows_lowercasing(tiny_loaded):
    app = InsideApp(tiny_loaded)
    async with app.run_test(size=(80, 24)) as pilot:
        view = await show(app, pilot, PROMPT)
        assert view.explanation is not None
        assert view.explanation.selected.index == len(tiny_loaded.tokenizer.encode_ids(PROMPT)) - 1
        text = stage_text(app)
        assert "Stage 1 of 6: Lowercasing" in text
        assert PROMPT in text
        assert PROMPT.lower() in text
        assert "4 characters changed" in text


async def test_stage_keys_move_between_stages(tiny_loaded):
    app = InsideApp(tiny_loaded)
    async with app.run_test(size=(80, 24)) as pilot:
        view = await show(app, pilot, PROMPT)
        await pilot.press("n")
        assert view.stage == 1
        assert "Stage 2 of 6: Tokenization" in stage_text(app)
        await pilot.press("right_square_bracket")
        assert view.stage == 2
        await pilot.press("left_square_bracket", "p")
        assert view.stage == 0
        await pilot.press("p")
        assert view.stage == len(STAGES) - 1
        assert "Stage 6 of 6: Final linear layer" in stage_text(app)
        await pilot.press("4")
        assert view.stage == 3


async def test_token_keys_select_and_post(tiny_loaded):
    app = InsideApp(tiny_loaded)
    async with app.run_test(size=(80, 24)) as pilot:
        view = await show(app, pilot, PROMPT)
        last = view.explanation.selected.index
        await pilot.press("comma")
        await settle(app, pilot)
        assert view.explanation.selected.index == last - 1
        await pilot.press("comma", "comma")
        await settle(app, pilot)
        assert view.explanation.selected.index == last - 3
        await pilot.press("full_stop")
        await settle(app, pilot)
        assert view.explanation.selected.index == last - 2
        assert app.selected[-1] == last - 2
        await pilot.press("home")
        await settle(app, pilot)
        assert view.explanation.selected.index == 0
        await pilot.press("comma")
        await settle(app, pilot)
        assert view.explanation.selected.index == 0


async def test_tokenization_stage_shows_ids(tiny_loaded):
    app = InsideApp(tiny_loaded)
    async with app.run_test(size=(100, 40)) as pilot:
        await show(app, pilot, "caesar ψ rome")
        await pilot.press("2")
        text = stage_text(app)
        for token in tiny_loaded.tokenizer.encode("caesar ψ rome").tokens:
            assert f" {token.id} " in text
        assert "[UNK] swallowed 'ψ'" in text
        assert f"vocabulary size {tiny_loaded.tokenizer.vocab_size}" in text


async def test_embedding_stage_shows_direct_neighbours(tiny_loaded):
    app = InsideApp(tiny_loaded)
    async with app.run_test(size=(100, 40)) as pilot:
        view = await show(app, pilot, PROMPT)
        await pilot.press("3")
        text = stage_text(app)
        token_id = view.explanation.selected.id
        table = tiny_loaded.model.embed.weight.detach()
        sims = F.cosine_similarity(table, table[token_id].unsqueeze(0), dim=-1)
        sims[token_id] = -float("inf")
        best = int(torch.argmax(sims))
        assert f"{float(sims[best]):+.3f}" in text
        assert f"{float(table[token_id].norm()):.3f}" in text


async def test_output_stage_shows_real_probabilities(tiny_loaded):
    app = InsideApp(tiny_loaded)
    async with app.run_test(size=(100, 40)) as pilot:
        await show(app, pilot, PROMPT, position=2)
        await pilot.press("6")
        text = stage_text(app)
        ids = tiny_loaded.tokenizer.encode_ids(PROMPT)
        with torch.inference_mode():
            probs = torch.softmax(tiny_loaded.model(torch.tensor([ids]))[0, 2].float(), dim=-1)
        top = torch.topk(probs, 3)
        for prob in top.values.tolist():
            assert f"{prob:.1%}" in text
        assert "the most likely token" in text
        assert f"rank {int((probs > probs[ids[3]]).sum()) + 1}" in text


async def test_layers_stage_shows_logit_lens(tiny_loaded):
    app = InsideApp(tiny_loaded)
    async with app.run_test(size=(100, 40)) as pilot:
        view = await show(app, pilot, PROMPT)
        await pilot.press("5")
        text = stage_text(app)
        stage = view.explanation.layers
        assert f"first on top after layer {stage.first_layer_on_top}" in text
        for layer in stage.layers:
            assert f"{layer.mlp_norm:.1f}" in text
            assert f"{layer.lens[0].prob:.0%}" in text


async def test_click_on_stage_bar_and_token(tiny_loaded):
    app = InsideApp(tiny_loaded)
    async with app.run_test(size=(80, 24)) as pilot:
        view = await show(app, pilot, PROMPT)
        bar = widget_text(app.query_one("#inside-stages", Static))
        await pilot.click("#inside-stages", offset=(bar.index("5 Layers") + 1, 0))
        assert view.stage == 4
        strip = widget_text(app.query_one("#inside-tokens", Static))
        first = tiny_loaded.tokenizer.encode(PROMPT).tokens[0].text.replace(" ", "·")
        await pilot.click("#inside-tokens", offset=(strip.index(first), 0))
        await settle(app, pilot)
        assert view.explanation.selected.index == 0
        assert app.selected == [0]


async def test_footer_lists_bindings(tiny_loaded):
    app = InsideApp(tiny_loaded)
    async with app.run_test(size=(80, 24)) as pilot:
        await show(app, pilot, PROMPT)
        actions = {binding.action for _, binding, _, _ in app.screen.active_bindings.values() if binding.show}
        assert {"next_stage", "previous_stage", "next_token", "previous_token"} <= actions
        footer = " ".join(widget_text(key) for key in app.query("FooterKey, FooterLabel"))
        assert "n" in footer.split()
        assert "Stage" in footer
        assert "Token" in footer


async def test_error_shown_in_status(tiny_loaded):
    app = InsideApp(tiny_loaded)
    async with app.run_test(size=(80, 24)) as pilot:
        view = await show(app, pilot, "")
        status = app.query_one("#inside-status", Static)
        assert status.has_class("-error")
        assert "the prompt is empty" in widget_text(status)
        assert view.explanation is None
        await show(app, pilot, PROMPT, position=500)
        assert "position 500 is out of range" in widget_text(status)
        await show(app, pilot, PROMPT)
        assert not status.has_class("-error")


async def test_newer_prompt_wins(tiny_loaded):
    app = InsideApp(tiny_loaded)
    async with app.run_test(size=(80, 24)) as pilot:
        view = app.query_one(InsideView)
        view.update_prompt("the senate met in the forum and then the consuls spoke", None)
        view.update_prompt(PROMPT, 1)
        await settle(app, pilot)
        assert view.explanation.lowercase.typed == PROMPT
        assert view.explanation.selected.index == 1


async def test_prompt_before_mount_is_kept(tiny_loaded):
    app = InsideApp(tiny_loaded)
    async with app.run_test(size=(80, 24)) as pilot:
        second = InsideView(tiny_loaded, id="second")
        second.update_prompt(PROMPT, 2)
        await app.query_one(TabPane).mount(second)
        await pilot.pause()
        await settle(app, pilot)
        assert second.explanation is not None
        assert second.explanation.selected.index == 2


@pytest.mark.parametrize("stage", range(len(STAGES)))
async def test_full_size_stage_fits_80x24(full_size_loaded, stage):
    app = InsideApp(full_size_loaded)
    async with app.run_test(size=(80, 24)) as pilot:
        await show(app, pilot, "Who is Caesar? " * 8)
        await pilot.press(str(stage + 1))
        await pilot.pause()
        body = app.query_one("#inside-body", VerticalScroll)
        assert body.virtual_size.height <= body.scrollable_content_region.height
        assert body.max_scroll_x == 0


async def test_larger_terminal_shows_more_detail(full_size_loaded):
    app = InsideApp(full_size_loaded)
    async with app.run_test(size=(160, 60)) as pilot:
        await show(app, pilot, "Who is Caesar? " * 8)
        await pilot.press("5")
        await pilot.pause()
        text = stage_text(app)
        assert "L2 norms of what each sublayer adds" in text
        await pilot.press("4")
        await pilot.pause()
        assert "similarity between positions of the window" in stage_text(app)
