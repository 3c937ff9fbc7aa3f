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

## Inspector (when the token strip has the focus)
| Key | Action |
|---|---|
| Tab | move focus to the token strip |
| ← → ↑ ↓ Home End | select a token (or click it) |
| l / L | next / previous layer |
| h / H | next / previous head |
| a | average over heads, or back to one head |
| Escape | back to the message box |

Blue chips are your tokens, green ones the model's, red ones `[UNK]` (characters the
tokenizer does not know). `·` is a space and `↵` a newline. Both panels talk about the
selected token P:

- **Attention**: the marked row (▶) is what token P attends to; columns are the tokens up to P.
  The newest reply token has not been read by the model yet, so its row is the token before it.
- **Candidates**: what the model predicted for position P, computed at token P-1. ▶ marks the
  token that is really at P: the sampled one for a reply token (with how many survived top-k
  and top-p), your token for a prompt token.

## Inside
The Inside tab steps through the forward pass over the conversation for one token: lowercasing,
tokenization, token embedding, positional embedding, the transformer layers and the final linear
layer. It follows the token selected in the Chat tab, and selecting a token here selects it there.

| Key | Action |
|---|---|
| n or ] / p or [ | next / previous stage |
| 1 – 6 | jump to a stage |
| . / , | next / previous token |
| Home / End | first / last token |
| ↑ ↓ PgUp PgDn | scroll the stage |

## Training
| Key | Action |
|---|---|
| ctrl+o | open a run folder and follow its metrics.jsonl |
| ctrl+n | start a training run in the background |
| F8 | stop that training run |
| F6 | smooth the train loss: off, 0.6, 0.9, 0.99 |

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
