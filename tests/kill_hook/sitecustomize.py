"""Imported by every Python process of a test's Snakemake run (its folder is on PYTHONPATH): a kill -9 on cue.

When a training job logs its first line of epoch 2 while another training job's result.json is
already on disk, it SIGKILLs its whole process group, Snakemake included, as a power loss would.
With `--cores 1` that is always the second training job: a finished cell and an interrupted one,
at the same point on every machine, without watching the clock.
"""

import logging
import os
import signal
from pathlib import Path


class KillOnCue(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("epoch 2/") and any(Path("results").glob("*/cells/**/result.json")):
            os.killpg(os.getpgid(0), signal.SIGKILL)


logging.getLogger("skipinit").addHandler(KillOnCue())
