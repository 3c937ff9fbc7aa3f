"""A training run started from the app: `romegpt train` in a child process."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

log = logging.getLogger(__name__)

LOG_FILE = "app-train.log"


class TrainingProcess:
    """Runs `python -m rome_core.cli train ...`; its output goes to out/app-train.log."""

    def __init__(self, data: Path, out: Path, preset: str, steps: int, resume: bool = False) -> None:
        self.data, self.out, self.preset, self.steps, self.resume = data, out, preset, steps, resume
        out.mkdir(parents=True, exist_ok=True)
        self.log_path = out / LOG_FILE
        command = [sys.executable, "-m", "rome_core.cli", "train", "--data", str(data), "--out", str(out), "--steps", str(steps), "--no-progress"]
        # A resumed run keeps the model shape it was started with, so it gets --resume instead of --preset.
        command += ["--resume"] if resume else ["--preset", preset]
        log.info("starting training: %s", " ".join(command))
        with open(self.log_path, "ab") as log_file:
            self._process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.poll()

    def last_log_line(self) -> str:
        try:
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1] if lines else ""

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the child: SIGTERM, then SIGKILL if it has not exited after `timeout` seconds."""
        if self._process.poll() is not None:
            return
        log.info("stopping training process %d", self._process.pid)
        self._process.terminate()
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("training process %d did not stop after %.0f s; killing it", self._process.pid, timeout)
            self._process.kill()
            self._process.wait()
