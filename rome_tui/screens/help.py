"""The help screen (F1 or ?)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP = """\
# RomeGPT

A small GPT trained on lowercase English about ancient Rome. Type a prompt in the **Chat** tab,
watch the reply arrive token by token, and look at what the model computed for every token.

## Chat
| Key | Action |
|---|---|
| Enter | send the message (the model continues the whole conversation) |
| Escape | stop the reply |
| F2 | sampling settings: temperature, top-k, top-p, max tokens, seed |
| ctrl+l | clear the conversation |
| F3 / F4 | save the conversation to a file / copy it to the clipboard |
| F5 | export the current trace (ids, texts, attention, top-k) as JSON |

The model was trained on lowercase text only, so your message is lowercased. The model reads the last
512 tokens (its context); older tokens slide out of the window, and the chat says so.

## Inspector
| Key | Action |
|---|---|
| Tab | move focus to the token strip |
| ← → ↑ ↓ Home End | select a token (or click it) |
| l / L | next / previous layer |
| h / H | next / previous head |
| a | average over heads, or back to one head |

Blue chips are your tokens, green ones the model's, red ones `[UNK]` (characters the
tokenizer does not know). `·` is a space and `↵` a newline. The heatmap shows where each
query token (row) looks among the keys (columns); the top-k panel shows the tokens the model
considered for the selected position, and for a generated token which one was sampled and how
many survived top-k and top-p.

## Training
| Key | Action |
|---|---|
| ctrl+o | open a run folder and follow its metrics.jsonl |
| ctrl+n | start a training run in the background |
| F8 | stop that training run |

## Everywhere
| Key | Action |
|---|---|
| ctrl+t | next tab |
| ctrl+p | command palette |
| F1 or ? | this help |
| ctrl+q | quit |

Press Escape to close this help.
"""


class HelpScreen(ModalScreen):
    BINDINGS = [Binding("escape,f1,q", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Markdown(HELP)
