"""Every figure shows its data: each panel of the matplotlib Figure objects, and the report opened in Chromium.

A panel counts as showing data when one of its data artists (not a theory line or the lr grid,
which are drawn for reading) has finite data inside the view limits and actually draws it: a line
of one point without a marker draws nothing, which is how empty panels once passed unnoticed.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import struct

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from skipinit import runtable
from skipinit.report import figures, provenance, style
from skipinit.signal import FIGURE_STEM
from skipinit.signal import plot as signal_plot

from conftest import REPO, snakemake

REFERENCE = REPO / "results" / "reference" / "default"


def all_axes(figure: Figure) -> list[Axes]:
    """Every panel, insets included."""
    found = []
    for axes in figure.axes:
        found += [axes, *axes.child_axes]
    return found


def data_points(artist, axes: Axes) -> np.ndarray | None:
    """The artist's points in data coordinates, or None for artists not placed in data coordinates (axhline, text)."""
    if isinstance(artist, Line2D):
        points = artist.get_xydata()
    elif isinstance(artist, matplotlib.collections.Collection):
        paths = artist.get_paths()
        points = np.concatenate([path.vertices for path in paths]) if paths else np.empty((0, 2))
    elif isinstance(artist, matplotlib.patches.Patch):
        points = artist.get_path().vertices
        artist_to_data = artist.get_transform() - axes.transData
        return artist_to_data.transform(points)
    else:
        return None
    try:
        to_data = artist.get_transform() - axes.transData
    except ValueError:  # blended or axes-fraction coordinates: a guide, not data
        return None
    return to_data.transform(np.asarray(points, dtype=float))


def in_view(points: np.ndarray, axes: Axes) -> np.ndarray:
    (x0, x1), (y0, y1) = sorted(axes.get_xlim()), sorted(axes.get_ylim())
    finite = np.isfinite(points).all(axis=1)
    x, y = points[:, 0], points[:, 1]
    return finite & (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)


def draws_data(artist, axes: Axes) -> bool:
    """A visible data artist with finite data in view that puts ink there."""
    if not artist.get_visible() or artist.get_gid() == style.GUIDE_GID:
        return False
    points = data_points(artist, axes)
    if points is None or not len(points):
        return False
    shown = in_view(points, axes)
    if isinstance(artist, Line2D):
        has_marker = artist.get_marker() not in (None, "None", "", " ")
        has_line = artist.get_linestyle() not in ("None", "", " ") and shown.sum() >= 2
        return bool(shown.any() and (has_marker or has_line))
    return bool(shown.any())


def assert_every_panel_shows_data(figure: Figure, name: str) -> None:
    for axes in all_axes(figure):
        artists = [*axes.lines, *axes.collections, *axes.patches]
        title = axes.get_title() or axes.get_title(loc="left") or axes.get_ylabel()
        assert any(draws_data(artist, axes) for artist in artists), f"{name}: panel {title!r} draws no data"
        for line in axes.lines:  # the whole curve of every line, none cut off by the axis limits
            points = data_points(line, axes)
            finite = np.isfinite(points).all(axis=1)
            assert in_view(points, axes)[finite].all(), f"{name}: panel {title!r} cuts off {line.get_label()!r}"


def figure_texts(figure: Figure) -> str:
    return "\n".join(text.get_text() for sub in [figure, *figure.subfigs] for text in sub.texts)


def experiment_figures(results, profile: str) -> dict[str, Figure]:
    runs = pd.read_parquet(results / "runs.parquet")
    curves = pd.read_parquet(results / "curves.parquet")
    built = {
        name: figures.plot_experiment(runs, curves, name, meta.get("kind", "generic"), profile=profile)
        for name, meta in runtable.read_experiment_meta(results / "runs.parquet").items()
    }
    built[FIGURE_STEM] = signal_plot.figure(pd.read_parquet(results / "signal.parquet"), profile)
    return built


def png_width(path) -> int:
    return struct.unpack(">I", path.read_bytes()[16:20])[0]


# --- the checker itself -----------------------------------------------------------------------


def test_the_check_fails_on_an_empty_panel_and_on_a_markerless_single_point():
    figure = Figure()
    empty, single, marked = figure.subplots(1, 3)
    empty.text(0.5, 0.5, "no runs", transform=empty.transAxes)
    single.plot([2], [30.0])  # what a curve with one evaluated epoch drew before: nothing
    marked.plot([2], [30.0], marker="o")
    assert not any(draws_data(a, empty) for a in empty.lines)
    assert not draws_data(single.lines[0], single)
    assert draws_data(marked.lines[0], marked)
    with pytest.raises(AssertionError, match="draws no data"):
        assert_every_panel_shows_data(figure, "made up")


def test_the_check_fails_on_a_curve_cut_off_by_the_axis():
    figure = Figure()
    axes = figure.subplots()
    axes.plot([1, 2, 3], [1.0, 2.0, 2.0**999])
    axes.set_ylim(0, 10)  # the old panel (a)
    with pytest.raises(AssertionError, match="cuts off"):
        assert_every_panel_shows_data(figure, "made up")


# --- the committed CPU reference (default profile) --------------------------------------------


@pytest.fixture(scope="module")
def reference_figures():
    return experiment_figures(REFERENCE, "default")


def test_every_panel_of_the_reference_figures_shows_data(reference_figures):
    experiments = set(runtable.read_experiment_meta(REFERENCE / "runs.parquet"))
    assert {"depth", "batch_size", "regularization"} <= experiments
    assert set(reference_figures) == experiments | {FIGURE_STEM}
    for name, figure in reference_figures.items():
        assert_every_panel_shows_data(figure, name)


def test_every_reference_figure_states_its_provenance(reference_figures):
    runs = pd.read_parquet(REFERENCE / "runs.parquet")
    for name in ("depth", "batch_size", "regularization"):
        text = figure_texts(reference_figures[name])
        rows = runtable.runs_of(runs, name)
        (epochs,) = rows["epochs"].unique()  # each study has its own budget
        seeds = sorted(int(seed) for seed in rows["seed"].unique())
        for part in ("profile default", "cifar10-jpeg", "width 1", f"{epochs} epochs", provenance.seeds_text(seeds)):
            assert part in text, (name, part, text)
    assert "profile default" in figure_texts(reference_figures[FIGURE_STEM])
    signal_seeds = sorted(int(seed) for seed in pd.read_parquet(REFERENCE / "signal.parquet")["seed"].unique())
    assert f"{len(signal_seeds)} seeds ({', '.join(map(str, signal_seeds))})" in figure_texts(
        reference_figures[FIGURE_STEM]
    )


def test_figure_2_shows_the_doubling_law_over_all_float64_blocks(reference_figures):
    panel_a = reference_figures[FIGURE_STEM].axes[0]
    skip = next(line for line in panel_a.lines if line.get_label() == "skip path")
    theory = next(line for line in panel_a.lines if line.get_gid() == style.GUIDE_GID)
    blocks, log2_var = skip.get_xydata().T
    assert blocks.max() == 1000 and panel_a.get_ylim()[1] >= log2_var.max() > 990  # 2^999, in view
    np.testing.assert_allclose(theory.get_ydata(), theory.get_xdata() - 1)  # Var = 2^(l-1)
    # the law's rate: doubling per block (the worst block's factor is a random walk's excursion, not the law)
    assert np.polyfit(blocks, log2_var, 1)[0] == pytest.approx(1.0, abs=0.01)


def test_figure_2_panel_c_keeps_the_exploding_net_off_the_batch_norm_axis():
    """On the GPU reference's signal study, which measures the unnormalized conv net too (the default does not)."""
    frame = pd.read_parquet(REPO / "results" / "reference" / "gpu" / "signal.parquet")
    panel_c = signal_plot.figure(frame, "gpu").axes[2]
    skip = next(line for line in panel_c.lines if line.get_label() == "skip path")
    low, high = panel_c.get_ylim()
    covered = math.log(skip.get_ydata().max() / skip.get_ydata().min()) / math.log(high / low)
    assert covered > 0.4  # the BN skip path spans the panel instead of a line along its bottom
    (inset,) = panel_c.child_axes
    assert inset.lines[0].get_ydata().max() > 80  # the unnormalized conv net: 2^88 by block 100, in its own axis


def test_figure_2_panel_c_reads_the_pooled_skip_variance_where_the_table_has_it():
    frame = pd.read_parquet(REFERENCE / "signal.parquet")
    pooled = frame.assign(skip_var_pooled=frame["skip_var"] * 3.0)
    figure = signal_plot.figure(pooled, "default")
    skip = next(line for line in figure.axes[2].lines if line.get_label() == "skip path")
    expected = frame[(frame["model"] == "conv-batchnorm")].groupby("block")["skip_var"].mean() * 3.0
    np.testing.assert_allclose(skip.get_ydata(), expected.to_numpy())
    assert "pooled over batch, channels and positions" in figure_texts(figure)
    older = frame.drop(columns="skip_var_pooled", errors="ignore")  # a signal.parquet of an older version
    assert "per-channel variance" in figure_texts(signal_plot.figure(older, "default"))


def test_best_lrs_on_the_edge_of_the_grid_are_marked(reference_figures):
    """Every best lr on the grid's top edge gets an up triangle, every one on its bottom edge a down triangle: the
    reference's batch-size sweep cut above its smallest optimum, which puts that optimum on the grid's top edge."""
    runs = runtable.runs_of(pd.read_parquet(REFERENCE / "runs.parquet"), "batch_size")
    runs = runs[runs["lr"] <= runtable.best_lr_summary(runs, ["label", "batch_size"])["best_lr"].min()]
    best = runtable.best_lr_summary(runs, ["label", "batch_size"])
    grid = sorted(runs["lr"].unique())
    on_top, on_bottom = int((best["best_lr"] == grid[-1]).sum()), int((best["best_lr"] == grid[0]).sum())
    assert on_top + on_bottom >= 1  # at least one optimum on an edge to draw
    curves = pd.read_parquet(REFERENCE / "curves.parquet")
    cut = figures.plot_experiment(
        runs, curves[curves["cell_id"].isin(runs["cell_id"])], "batch_size", "batch_size", profile="default"
    )
    best_lr = cut.axes[1]
    ups = [y for line in best_lr.lines if line.get_marker() == "^" for y in line.get_ydata()]
    downs = [y for line in best_lr.lines if line.get_marker() == "v" for y in line.get_ydata()]
    assert ups == [grid[-1]] * on_top and downs == [grid[0]] * on_bottom
    text = figure_texts(cut)
    assert f"best lr on the edge of the lr grid in {on_top + on_bottom} of {len(best)} settings" in text
    assert "edge" not in figure_texts(reference_figures["batch_size"])  # the whole grid brackets every optimum
    assert "edge" not in figure_texts(reference_figures["depth"])  # one lr tried: no grid to be on the edge of


def test_diverged_points_carry_a_cross(reference_figures):
    accuracy = reference_figures["depth"].axes[0]
    crosses = [line for line in accuracy.lines if line.get_marker() == "x"]
    points = np.concatenate([line.get_xydata() for line in crosses])
    # Unnormalized and SkipInit (alpha=1) diverge at depth 100 (x dodged by under a fifth of an octave)
    assert len(points) == 2 and all(abs(math.log2(x / 100)) < 0.2 for x in points[:, 0])


def test_single_evaluated_epoch_is_drawn_as_markers(reference_figures):
    curves = reference_figures["depth"].axes[1]  # eval_every 2, 2 epochs: one evaluated point per run
    assert all(line.get_marker() not in (None, "None", "") for line in curves.lines)
    assert sum(draws_data(line, curves) for line in curves.lines) >= 5


# --- the smoke run, through Snakemake ---------------------------------------------------------


@pytest.mark.slow
def test_every_panel_of_the_smoke_figures_shows_data(smoke_run):
    workdir, _ = smoke_run
    results = workdir / "results" / "smoke"
    for stem in ("depth", FIGURE_STEM):
        for fmt in style.FIGURE_FORMATS:
            assert (results / "figures" / f"{stem}.{fmt}").stat().st_size > 10_000
    for name, figure in experiment_figures(results, "smoke").items():
        assert_every_panel_shows_data(figure, name)
        assert "profile smoke" in figure_texts(figure)


@pytest.mark.slow
def test_report_caption_states_the_provenance_the_figure_states(smoke_run):
    """The caption's line comes from the profile's cells at parse time, the figure's from runs.parquet: the same."""
    from skipinit import profile

    workdir, _ = smoke_run
    runs = pd.read_parquet(workdir / "results" / "smoke" / "runs.parquet")
    cells = profile.resolve([REPO / "config" / "smoke.yaml"]).experiments["depth"]
    from_cells = provenance.experiment_line("smoke", cells)
    assert from_cells == provenance.experiment_line("smoke", runs.to_dict("records"))
    assert from_cells in figure_texts(experiment_figures(workdir / "results" / "smoke", "smoke")["depth"])


# --- the report in a real browser -------------------------------------------------------------

CHROMIUM = next((path for path in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if path), None)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH: `apt-get install chromium` (`make test` installs it where it can)"
)
FRONT_PAGE = "typeof app !== 'undefined' && document.querySelector('#app').innerText.includes('Where to read')"


@contextlib.contextmanager
def chromium_page():
    """A page of the system's headless Chromium, driven by Playwright, and the errors its console and scripts report."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            errors: list[str] = []
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: errors.append(str(error)))
            yield page, errors
        finally:
            browser.close()


@needs_chromium
def test_the_browser_check_sees_console_errors_and_uncaught_exceptions():
    with chromium_page() as (page, errors):
        page.goto(
            "data:text/html,<script>console.error('bad thing'); setTimeout(() => { throw new Error('boom'); "
            "});</script>"
        )
        page.wait_for_function("new Promise(done => setTimeout(() => done(true), 200))")
        assert any("bad thing" in error for error in errors)
        assert any("boom" in error for error in errors)


@needs_chromium
@pytest.mark.slow
def test_report_opens_in_chromium_with_every_figure_and_the_claims(smoke_run):
    workdir, _ = smoke_run
    results = workdir / "results" / "smoke"
    report = results / "report.html"
    snakemake("--configfile", "config/smoke.yaml", "--report", str(report), cwd=workdir)
    shots = results / "report_screenshots"
    shots.mkdir(exist_ok=True)
    figure_paths = [f"results/smoke/figures/{stem}.png" for stem in ("depth", FIGURE_STEM)]
    with chromium_page() as (page, errors):
        page.goto(report.as_uri())
        front = page.wait_for_function(f"{FRONT_PAGE} && document.querySelector('#app').innerText").json_value()
        page.screenshot(path=shots / "front_page.png")
        assert "Profile smoke" in front and "claims.md" in front and "signal_propagation.png" in front
        assert sorted(page.evaluate("Object.keys(results)")) == sorted(
            [*figure_paths, "results/smoke/claims.md", "results/smoke/scorecard.md", "results/smoke/tables/depth.csv"]
        )
        for path in figure_paths:  # shown as the report shows a figure; decoded by the browser at full size
            page.evaluate(f"() => app.setView({{content: 'img', contentPath: results[{path!r}].data_uri}})")
            width = page.wait_for_function(
                f"() => {{ const img = [...document.querySelectorAll('#app img')]"
                f".find(i => i.src === results[{path!r}].data_uri); return img && img.complete && img.naturalWidth; }}"
            ).json_value()
            assert width == png_width(workdir / path)
            page.screenshot(path=shots / f"{path.rsplit('/', 1)[1]}")
        claims = page.evaluate("atob(results['results/smoke/claims.md'].data_uri.split(',')[1])")
        assert "| id | claim | verdict |" in claims and "signal-unnormalized-doubles" in claims
        page.evaluate("() => app.showCategory('Claims')")
        assert page.wait_for_function("document.querySelector('#app').innerText.includes('claims.md')").json_value()
        assert errors == []
    print(f"report screenshots in {shots}")


# --- every kind, with seeds -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["depth", "trainability", "batch_size", "imagenet", "regularization", "generic"])
def test_every_kind_shows_data_with_error_bars_over_seeds(kind):
    from test_tables import batch_runs, curves_of, depth_runs

    runs = batch_runs() if kind in ("batch_size", "imagenet") else depth_runs()  # depth_runs: 2 seeds, some diverged
    runs["experiments"] = [[kind]] * len(runs)
    figure = figures.plot_experiment(runs, curves_of(runs), kind, kind, profile="made-up")
    assert_every_panel_shows_data(figure, kind)
    accuracy = figure.axes[0]
    seeds = runs["seed"].nunique()
    assert any(container.has_yerr for container in accuracy.containers) == (seeds > 1)  # spread only from seeds
    assert "profile made-up" in figure_texts(figure)
    assert provenance.seeds_text(runs["seed"]) in figure_texts(figure)
