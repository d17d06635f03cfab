"""Bad profiles are refused by Snakemake (or `make run`'s check) in one line, before any job runs."""

import subprocess
import sys

import pytest
import yaml

from skipinit import profile

from conftest import REPO, copy_workflow, snakemake

SMOKE = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return copy_workflow(tmp_path_factory.mktemp("profiles"))


def refusal(workdir, text: str, *extra: str) -> str:
    """Run the workflow (not a dry run) on a profile; assert it stopped before any job, return its one line."""
    (workdir / "bad.yaml").write_text(text)
    result = snakemake("--cores", "1", "--configfile", "bad.yaml", *extra, cwd=workdir, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert not (workdir / "resources").exists() and not (workdir / "results").exists(), "a job ran"
    assert "Failed validating" not in output and "Traceback" not in output, output  # no schema dump, no traceback
    lines = [line for line in output.splitlines() if "config error" in line]
    assert len(lines) == 1, output
    return lines[0]


def smoke_with(**changes) -> str:
    return yaml.safe_dump({**SMOKE, **changes}, sort_keys=False)


def test_duplicate_key_names_file_line_and_key(workdir):
    text = smoke_with() + "name: other\n"
    line = refusal(workdir, text)
    duplicate_line = len(text.splitlines())
    assert f"bad.yaml:{duplicate_line}: key 'name' appears twice (first on line 1)" in line


def test_duplicate_key_inside_an_experiment(workdir):
    text = smoke_with().replace("      lr:\n", "      lr: [1.0]\n      lr:\n", 1)
    assert "key 'lr' appears twice" in refusal(workdir, text)


@pytest.mark.parametrize("name", [".", "..", ".hidden", "a/b"])
def test_results_name_must_be_a_plain_folder_name(workdir, name):
    line = refusal(workdir, smoke_with(name=name))
    assert f"name: {name!r} does not match" in line and "plain folder name" in line


def test_dataset_name_must_be_a_plain_folder_name(workdir):
    assert "dataset: '..' does not match" in refusal(workdir, smoke_with(dataset=".."))


def test_lowercase_boolean_on_the_command_line_gets_a_hint(workdir):
    line = refusal(workdir, smoke_with(), "--config", "deterministic=true")
    assert "deterministic: 'true' is not of type 'boolean'" in line and "True or False" in line


def test_schema_refusal_is_one_line_naming_the_key(workdir):
    line = refusal(workdir, smoke_with(precision="fp16"))
    assert "precision: 'fp16' is not one of ['auto', 'bf16', 'fp32']" in line and "bad.yaml" in line


def test_bad_grid_value_is_refused_with_its_location_and_file(workdir):
    experiments = {
        "depth": {
            **SMOKE["experiments"]["depth"],
            "grid": {**SMOKE["experiments"]["depth"]["grid"], "lr": [0.1, "fast"]},
        }
    }
    line = refusal(workdir, smoke_with(experiments=experiments))
    assert "bad.yaml: experiments.depth.grid.lr[1]: lr='fast' is not allowed; allowed: a finite number > 0" in line


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: x\nexperiments:\n  depth: {grid: [1, 2}\n")
    result = subprocess.run(
        [sys.executable, "-m", "skipinit", "check-profile", str(bad)], capture_output=True, text=True
    )
    assert result.returncode == 1
    assert result.stderr.strip().startswith(f"error: {bad}:3:") and "not valid YAML" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_merge_keys_may_override_what_they_bring_in(tmp_path):
    path = tmp_path / "merge.yaml"
    path.write_text("base: &base {lr: 0.1, seed: 0}\nmodel:\n  <<: *base\n  lr: 0.2\n")
    assert profile.load(path)["model"] == {"lr": 0.2, "seed": 0}


@pytest.mark.parametrize("name", ["config", "smoke", "gpu", "paper"])
def test_committed_profiles_pass_the_strict_check(name):
    result = subprocess.run(
        [sys.executable, "-m", "skipinit", "check-profile", f"config/{name}.yaml"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_unusable_data_path_is_refused_before_any_job(workdir, tmp_path):
    empty = tmp_path / "empty-folder"
    empty.mkdir()
    line = refusal(workdir, smoke_with(data_source="imagefolder", data_path=str(empty), dataset="mine"))
    assert f"data_path={str(empty)!r} has no train/<class>/<image> and test/<class>/<image> in the folder" in line
