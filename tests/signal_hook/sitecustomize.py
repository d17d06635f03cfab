"""A signal on cue, for tests that stop a real process at a chosen point without watching the clock.

Python imports this module at start-up wherever its folder is on PYTHONPATH, so the tests put it
there for one subprocess (a `python -m skipinit train`, or a Snakemake run and all its jobs):
- SIGNAL_ON_LINE: when a line the `skipinit` logger writes starts with this, the signal is sent;
- SIGNAL_NAME: SIGKILL (a kill -9: power loss) or SIGTERM (a scheduler's time limit);
- SIGNAL_TO: `self` (this process) or `group` (its whole process group, Snakemake included);
- SIGNAL_AFTER: a glob (from the working folder) that must already match, e.g. another job's
  result.json, so that with `--cores 1` the cue falls in the second training job.
"""

import logging
import os
import signal
from pathlib import Path


class SignalOnCue(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        after = os.environ.get("SIGNAL_AFTER")
        if not record.getMessage().startswith(os.environ["SIGNAL_ON_LINE"]) or (after and not any(Path().glob(after))):
            return
        number = getattr(signal, os.environ["SIGNAL_NAME"])
        if os.environ["SIGNAL_TO"] == "group":
            os.killpg(os.getpgid(0), number)
        else:
            os.kill(os.getpid(), number)


if os.environ.get("SIGNAL_ON_LINE"):
    logging.getLogger("skipinit").addHandler(SignalOnCue())
