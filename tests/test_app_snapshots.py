"""Snapshots of the app's main screens (pytest-textual-snapshot); update with --snapshot-update."""

from __future__ import annotations

import json
from pathlib import Path

from rome_core.generate import SamplingSettings
from rome_tui.app import INSPECTOR_INTERVAL_S, RomeApp
from rome_tui.widgets.prompt_input import PromptInput
from rome_tui.widgets.token_strip import TokenStrip

SETTINGS = SamplingSettings(temperature=0.8, top_k=40, top_p=0.95, max_tokens=12, seed=7)
NARROW = (80, 24)
WIDE = (160, 48)

RUN_RECORDS = [
    {"event": "start", "step": 0, "tokens": 0, "total_steps": 60},
    *(
        {"event": "train", "step": step, "tokens": step * 512, "train_loss": 5.7 - 0.04 * step, "lr": 0.003,
         "tokens_per_s": 1000.0, "elapsed_s": step * 0.5, "total_steps": 60}
        for step in range(5, 45, 5)
    ),
    {"event": "eval", "step": 20, "tokens": 10240, "elapsed_s": 10.0, "val_loss": 5.0, "bpc": 1.8,
     "sample": "who is caesar? the legions of rome", "probe_prompt": "the senate and the people of",
     "probe": [{"token": " rome", "prob": 0.41}, {"token": " the", "prob": 0.12}, {"token": " gaul", "prob": 0.05},
               {"token": " and", "prob": 0.04}, {"token": ",", "prob": 0.03}]},
    {"event": "resume", "step": 30, "tokens": 15360, "total_steps": 60},
    {"event": "eval", "step": 40, "tokens": 20480, "elapsed_s": 20.0, "val_loss": 4.3, "bpc": 1.5,
     "sample": "who is caesar? caesar led the legions", "probe_prompt": "the senate and the people of",
     "probe": [{"token": " rome", "prob": 0.62}, {"token": " the", "prob": 0.08}, {"token": " gaul", "prob": 0.04},
               {"token": " and", "prob": 0.03}, {"token": ",", "prob": 0.02}]},
]


async def settle(pilot) -> None:
    # Twice, with a pause longer than the inspector's redraw interval between. The last redraw
    # of a reply is on a timer and may start a worker of its own (the Inside view), so a loaded
    # machine can leave work pending after the first wait.
    for _ in range(2):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause(INSPECTOR_INTERVAL_S * 2)
    # A blinking cursor would make the picture depend on how long the test took.
    for widget in pilot.app.screen.query("*"):
        if hasattr(widget, "cursor_blink"):
            widget.cursor_blink = False
    await pilot.pause()


async def chat_about_caesar(pilot) -> None:
    await settle(pilot)
    prompt = pilot.app.query_one(PromptInput)
    prompt.text = "Who is Caesar?"
    await pilot.press("enter")
    await settle(pilot)


def test_chat_narrow(snap_compare, tiny_checkpoint):
    assert snap_compare(RomeApp(tiny_checkpoint, SETTINGS), terminal_size=NARROW, run_before=chat_about_caesar)


def test_chat_wide_with_selection(snap_compare, tiny_checkpoint):
    async def run_before(pilot) -> None:
        await chat_about_caesar(pilot)
        pilot.app.query_one(TokenStrip).focus()
        await pilot.press("home", "right", "right", "right", "l")
        await settle(pilot)

    assert snap_compare(RomeApp(tiny_checkpoint, SETTINGS), terminal_size=WIDE, run_before=run_before)


def run_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "demo-run"
    folder.mkdir()
    with open(folder / "metrics.jsonl", "w", encoding="utf-8") as handle:
        for record in RUN_RECORDS:
            handle.write(json.dumps(record) + "\n")
    return folder


def test_training_narrow(snap_compare, tiny_checkpoint, tmp_path):
    folder = run_folder(tmp_path)

    async def run_before(pilot) -> None:
        await settle(pilot)
        pilot.app.open_run(folder)
        await settle(pilot)

    assert snap_compare(RomeApp(tiny_checkpoint, SETTINGS), terminal_size=NARROW, run_before=run_before)


def test_training_wide(snap_compare, tiny_checkpoint, tmp_path):
    folder = run_folder(tmp_path)

    async def run_before(pilot) -> None:
        await settle(pilot)
        pilot.app.open_run(folder)
        await settle(pilot)

    assert snap_compare(RomeApp(tiny_checkpoint, SETTINGS), terminal_size=WIDE, run_before=run_before)


def test_help_narrow(snap_compare, tiny_checkpoint):
    async def run_before(pilot) -> None:
        await settle(pilot)
        await pilot.press("f1")
        await pilot.pause()

    assert snap_compare(RomeApp(tiny_checkpoint, SETTINGS), terminal_size=NARROW, run_before=run_before)


def test_settings_narrow(snap_compare, tiny_checkpoint):
    async def run_before(pilot) -> None:
        await settle(pilot)
        await pilot.press("f2")
        await settle(pilot)

    assert snap_compare(RomeApp(tiny_checkpoint, SETTINGS), terminal_size=NARROW, run_before=run_before)


def test_error_screen_narrow(snap_compare):
    # A relative path keeps the temporary folder's name off the screen.
    assert snap_compare(RomeApp(Path("no-such-checkpoint")), terminal_size=NARROW, run_before=settle)
