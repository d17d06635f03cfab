"""The scorecard: every claim of config/claims.yaml against the committed result sets, as their claims.json judged
it."""

import json

import pytest

from skipinit import cli
from skipinit.claims import load_spec
from skipinit.report import scorecard

from conftest import REPO

CLAIMS_FILE = REPO / "config" / "claims.yaml"
REFERENCES = [REPO / "results" / "reference" / name / "claims.json" for name in ("default", "gpu")]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("card") / "scorecard.md"
    written = scorecard.write([*REFERENCES, REFERENCES[0]], CLAIMS_FILE, out)  # a file passed twice is one column
    rows, columns = scorecard.build(REFERENCES, CLAIMS_FILE, out)
    return out, written, rows, columns


def test_scorecard_lists_every_claim_against_every_reference(built):
    out, written, rows, columns = built
    ids = [claim["id"] for claim in load_spec(CLAIMS_FILE)["claims"]]
    assert [row["id"] for row in rows] == ids and len(ids) >= 20
    assert all(len(row["cells"]) == 2 for row in rows)
    page = out.read_text()
    for claim_id in ids:
        assert page.count(f"**{claim_id}**") == 1, claim_id
    header = "| claim | " + " | ".join(f"`{column['folder']}`" for column in columns) + " |"
    assert page.count(header) == 1 and len(columns) == 2
    assert [column["folder"].split("reference/")[-1] for column in columns] == ["default", "gpu"]
    assert written == [out, out.with_suffix(".html")] and "<table>" in out.with_suffix(".html").read_text()


def test_default_reference_verdicts_and_budget(built):
    _, _, rows, columns = built
    default = {row["id"]: row["cells"][0] for row in rows}
    assert (
        default["depth-scaled-fails"]["verdict"] == "inconclusive"
        and "no run at depth >= 1000" in default["depth-scaled-fails"]["key"]
    )
    # one seed per lr decides no lr's stability (a share of seeds): the claim waits for them
    assert default["bn-larger-stable-lr"]["verdict"] == "inconclusive"
    assert default["depth-unnormalized-fails"]["verdict"] == "reproduced"
    assert default["depth-scaled-fails"]["link"].endswith("reference/default/figures/depth.png")
    assert default["depth-skipinit-matches-bn"]["verdict"] == "inconclusive"
    assert "budget of 4 epochs" in default["depth-skipinit-matches-bn"]["key"]  # the depth study's 4, not 10
    import pandas as pd

    runs = pd.read_parquet(REPO / "results" / "reference" / "default" / "runs.parquet")
    epochs = "/".join(str(e) for e in sorted(runs["epochs"].unique()))  # 4/10/40: each study its own budget
    assert epochs == "4/10/40" and columns[0]["note"] == (
        # 1 seed per setting in the grid; the batch-size study got a second in the second round
        f"{len(runs)} runs, {epochs} epochs, training subset(s) of 512/2,560 images, 1-2 seeds per setting, "
        "on cpu (bf16)"
    )
    assert sum(columns[0]["counts"].values()) == len(rows)


def test_gpu_reference_without_runs_parquet_is_listed_as_not_run(built):
    _, _, rows, columns = built
    gpu = {row["id"]: row["cells"][1] for row in rows}
    assert "no runs.parquet (13 trained pack(s) under cells/" in columns[1]["note"]
    run_claims = [claim_id for claim_id in gpu if not claim_id.startswith("signal-")]
    assert all(gpu[claim_id]["verdict"] == "not_run" for claim_id in run_claims)
    assert "no runs.parquet in this results folder" in gpu["depth-unnormalized-fails"]["key"]
    assert gpu["signal-bn-skip-linear"]["verdict"] == "reproduced"  # its signal study is complete
    assert gpu["signal-bn-skip-linear"]["link"].endswith("reference/gpu/figures/signal_propagation.png")


def test_the_scorecard_shows_the_verdicts_of_claims_json_and_judges_nothing(tmp_path):
    """A verdict in claims.json is what the page shows: the scorecard reads it, it does not judge the Parquet again."""
    entries = json.loads(REFERENCES[0].read_text())
    entries[0] = {
        **entries[0],
        "verdict": "not_reproduced",
        "evidence": {**entries[0]["evidence"], "reason": "edited by the test"},
    }
    (tmp_path / "claims.json").write_text(
        json.dumps(entries[:-1])
    )  # and one claim missing: judged by an older claims file
    rows, _ = scorecard.build([tmp_path / "claims.json"], CLAIMS_FILE, tmp_path / "card.md")
    cells = {row["id"]: row["cells"][0] for row in rows}
    assert (
        cells[entries[0]["id"]]["verdict"] == "not_reproduced"
        and cells[entries[0]["id"]]["key"] == "edited by the test"
    )
    assert cells[entries[-1]["id"]]["verdict"] == "not_run" and "older claims file" in cells[entries[-1]["id"]]["key"]


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such claims file"),
        ('[{"id": 1}]', "is not a claims.json of this package"),
    ],
)
def test_a_missing_or_foreign_claims_file_is_refused_with_one_line(tmp_path, content, message):
    if content is not None:
        (tmp_path / "claims.json").write_text(content)
    with pytest.raises(SystemExit, match=message) as refused:
        cli.main(["scorecard", "--claims", str(tmp_path / "claims.json"), "--out", str(tmp_path / "card.md")])
    assert len(str(refused.value).splitlines()) == 1 and not (tmp_path / "card.md").exists()
