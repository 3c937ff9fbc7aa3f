"""RomeGPT's engine: tokenizer, model, tracing, training, generation and checkpoints.

This package has no UI code; `rome_tui` builds the app on top of it.
"""

from rome_core.config import PRESETS, ModelConfig
from rome_core.errors import RomeError

__all__ = ["PRESETS", "ModelConfig", "RomeError"]
__version__ = "0.1.0"
