"""The committed reference jobs as rows of bench/throughput.csv (kind `job`): what each job did and how long it took.

Snakemake's benchmark TSV gives a job's wall seconds (`s`): process start, data to the device,
cuDNN autotuning, training, evaluation and checkpoints. The job's log says what it trained in
that process: the epochs it logged (a resumed job logs only the epochs after its checkpoint), the
evaluations among them (`test acc` not `n/a`), and the checkpoint step it resumed from. A pack
whose members all diverged stops early; its trained steps come from its result.json, and a job
without one (its cells were removed from the reference) is left out: its steps are unknown.

    PYTHONPATH=src python bench/reference_jobs.py results/reference/gpu h100 >> bench/throughput.csv
"""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from skipinit.cost import COLUMNS  # noqa: E402

EPOCH = re.compile(r"epoch (\d+)/(\d+) lr=\S+ seed=\S+ \|.*\| test acc (n/a|[\d.]+%)")
RESUMED = re.compile(r"after epoch (\d+)/\d+ \(step (\d+)\)")


def job_row(tsv: Path, root: Path, device_class: str) -> dict | None:
    relative = str(tsv.relative_to(root / "benchmarks" / "train")).removesuffix(".tsv")
    dataset, net, model, hyper, members = Path(relative).parts
    log = root / "logs" / "train" / f"{relative}.log"
    lines = log.read_text().splitlines()
    first = [m for m in map(EPOCH.search, lines) if m][:: len(members.split("+"))]  # member 0's lines
    resumed = next((m for m in map(RESUMED.search, lines) if m), None)
    result = root / "cells" / relative / "result.json"
    rows = json.loads(result.read_text()) if result.is_file() else None
    batch = int(re.match(r"b(\d+)", hyper).group(1))
    steps_per_epoch = 50000 // batch  # the full CIFAR-10 training set of these jobs (no train_subset in their names)
    start_step = int(resumed.group(2)) if resumed else 0
    if rows is not None:
        steps = int(rows[0]["steps"]) - start_step
    elif all(int(m.group(1)) < int(m.group(2)) for m in first[-1:]):
        return None  # stopped before its last epoch and no result: steps unknown
    else:
        steps = len(first) * steps_per_epoch
    _, depth, width = net.split("-")
    variant = model.split("-")[0]
    info = rows[0] if rows else {}
    date = lines[0][:10] if lines else ""
    seconds = float(tsv.read_text().splitlines()[1].split("\t")[0])
    return {
        "kind": "job",
        "device_class": device_class,
        "device": info.get("device", ""),
        "torch": info.get("torch_version", ""),
        "precision": info.get("precision", "bf16"),
        "compile": "false",
        "arch": "wrn",
        "depth": int(depth),
        "width": int(width),
        "variant": variant,
        "batch_size": batch,
        "pack": len(members.split("+")),
        "micro_batch": 0,
        "steps": steps,
        "evals": sum(m.group(3) != "n/a" for m in first),
        "test_images": 10000,
        "seconds": seconds,
        "date": date,
        "source": str(tsv),
    }


def main(argv: list[str]) -> None:
    root, device_class = Path(argv[0]), argv[1]
    rows = []
    for tsv in sorted((root / "benchmarks" / "train").rglob("*.tsv")):
        row = job_row(tsv, root, device_class)
        if row is None:
            print(
                f"left out {tsv}: its pack stopped early and has no result.json, so its steps are unknown",
                file=sys.stderr,
            )
        else:
            rows.append(row)
    # A job whose cells were taken out of the reference has no result.json: same session, same device.
    known = next(row for row in rows if row["device"])
    writer = csv.DictWriter(sys.stdout, COLUMNS, lineterminator="\n")
    for row in rows:
        writer.writerow({**row, "device": row["device"] or known["device"], "torch": row["torch"] or known["torch"]})


if __name__ == "__main__":
    main(sys.argv[1:])
