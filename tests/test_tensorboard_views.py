"""What TensorBoard and the report show: Custom Scalars charts whose lines are the logged tags (matched literally),
one colour per vector in every figure, legends beside the curves."""

from __future__ import annotations

import re

from matplotlib.backends.backend_agg import FigureCanvasAgg
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2, metadata

from lcross.report.plots import VARIANT_COLOURS, line_colours, sweep_figure
from lcross.results import Variant
from lcross.training.tensorboard import literal_tag

from .conftest import fit_tiny


def _layout_and_tags(run):
    events = EventAccumulator(str(run), size_guidance={"tensors": 0, "scalars": 0})
    events.Reload()
    config = events.Tensors(metadata.CONFIG_SUMMARY_TAG)[-1].tensor_proto.string_val[0]
    layout = layout_pb2.Layout.FromString(config)
    return layout, set(events.Tags()["scalars"])


def test_custom_scalars_charts_show_every_logged_line_of_positive_and_fractional_betas(tmp_path):
    fit_tiny(
        tmp_path,
        "--trainer.max_epochs=1",
        "--efficacy.betas=[-0.5, 0.5, 2]",
        "--efficacy.every_n_epochs=1",
        "--efficacy.random_maps=0",
        "--generation=null",
    )
    layout, logged = _layout_and_tags(tmp_path / "logs" / "tiny" / "version_0")
    charts = [chart for category in layout.category for chart in category.chart]
    assert {c.title for c in charts} >= {f"beta {b}: every vector, and no steering" for b in ("-0.5", "+0.5", "+2")}
    for chart in charts:
        for regex in chart.multiline.tag:
            matched = [tag for tag in logged if re.search(regex, tag)]
            # the source's own no-steering line is logged only with source_self_steering; everything else is
            assert len(matched) == 1 or (not matched and regex.endswith("source_no_steering$")), (regex, matched)
    positive = next(c for c in charts if c.title.startswith("beta +0.5"))
    lines = [tag for regex in positive.multiline.tag for tag in logged if re.search(regex, tag)]
    assert "efficacy/sentiment/transferred/beta_+0.5" in lines and "efficacy/sentiment/own_sv/beta_+0.5" in lines


def test_a_literal_tag_matches_itself_only():
    regex = literal_tag("gen/fear (novel)/own_sv/beta_+0.5")
    assert re.search(regex, "gen/fear (novel)/own_sv/beta_+0.5")
    assert not re.search(regex, "gen/fear (novel)/own_sv/beta_+005")  # '.' is not any character
    assert not re.search(regex, "gen/fear (novel)/own_sv/beta_+0.5/x")


def test_each_vector_keeps_its_colour_whatever_the_order_and_every_line_differs():
    first = line_colours(["own_sv", "transferred", "random_T"])
    second = line_colours(["random_T", "transferred (SmolLM2)", "source_on_source", "own_sv"])
    assert first["transferred"] == second["transferred (SmolLM2)"] == VARIANT_COLOURS[Variant.TRANSFERRED]
    assert first["random_T"] == second["random_T"] and first["own_sv"] == second["own_sv"]
    two_runs = line_colours(["transferred (SmolLM2)", "transferred (Qwen2)", "own_sv"])
    assert len(set(two_runs.values())) == 3


def test_the_legend_sits_beside_the_curves():
    betas = [-2.0, -1.0, 0.0, 1.0, 2.0]
    curves = {name: [0.1, 0.3, 0.5, 0.7, 0.9] for name in ("own_sv", "transferred", "random_T", "source_on_source")}
    figure = sweep_figure("sentiment", betas, curves, baseline=0.5, source_baseline=0.4)
    renderer = FigureCanvasAgg(figure).get_renderer()
    figure.draw(renderer)
    (axes,), (legend,) = figure.axes, figure.legends
    assert not axes.get_window_extent(renderer).overlaps(legend.get_window_extent(renderer))
    drawn = {line.get_label(): line.get_color() for line in axes.get_lines() if line.get_label() in curves}
    assert drawn["transferred"] == VARIANT_COLOURS[Variant.TRANSFERRED]
