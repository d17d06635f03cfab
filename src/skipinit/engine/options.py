"""How the engine runs a pack (not what it trains): the one source of the engine's defaults.

Every field is a profile key of the same name (workflow/schemas/config.schema.yaml, with the
same default), a `skipinit train --<field-name>` flag (cli.py builds them from these fields) and
reaches the engine through common.smk's `engine_flags()`; tests/test_options.py holds the four to
one another. `metadata["help"]` is the flag's help, `metadata["choices"]` its allowed values.
"""

from __future__ import annotations

import dataclasses

from skipinit.vocab import FIXUP_SCALAR_LR, PRECISIONS

PACKINGS = ("auto", "channels", "vmap", "sequential")


def option(default, help: str, choices: tuple | None = None):
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices})


@dataclasses.dataclass
class EngineOptions:
    device: str = option("auto", "auto | cpu | cuda | cuda:N")
    precision: str = option("auto", "auto: bf16 autocast on CUDA and on CPUs with native bf16 (AVX512-BF16 or AMX), fp32 "
                                    "elsewhere; bf16: autocast on any device (emulated, slow, on other CPUs); fp32", PRECISIONS)
    compile: bool = option(False, "torch.compile the forward and the SGD update, falling back to eager if compiling fails")
    # Off until a GPU measurement shows the graphed step equal to the eager one and faster (bench/RESULTS.md).
    cuda_graphs: bool = option(False, "capture the whole training step in a CUDA graph after a few eager steps (CUDA only; "
                                      "ignored on the CPU, eager if capture fails)")
    channels_last: bool = option(True, "channels_last memory format on the device")
    deterministic: bool = option(False, "deterministic algorithms and fixed threads: CPU runs repeat bit for bit")
    eval_every: int = option(1, "evaluate on the test set every k epochs (and always at the last)")
    divergence_loss: float = option(1e3, "a member whose training loss is non-finite or above this has diverged")
    # 1, as the Snakemake rule's `threads:` (a positive count); 0 leaves torch's thread count alone and decodes ImageNet in the main process.
    threads: int = option(1, "CPU threads (torch.set_num_threads); also the ImageNet loader's worker processes")
    image_size: int = option(224, "ImageNet crop in pixels (evaluation resizes to 8/7 of it first); 32 x 32 data keep their size")
    micro_batch: int = option(0, "examples per forward/backward; larger batches accumulate gradients (0: the whole batch)")
    packing: str = option("auto", "how a pack of several members runs: channel packing (auto: where it applies), else torch.vmap; "
                                  "sequential: one after another in one process (start-up paid once; CPUs, where packing is slower)",
                          PACKINGS)
    fixup_scalar_lr: float = option(FIXUP_SCALAR_LR, "learning-rate multiplier of Fixup's scalar biases and multipliers (the authors': 0.1)")
