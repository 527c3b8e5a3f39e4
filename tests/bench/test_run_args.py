"""``python -m bench``'s (g) flags: a bad value is one line that names the flag, before anything runs."""

from __future__ import annotations

import pytest

from bench.run import parse_args


@pytest.mark.parametrize(
    ("flags", "names"),
    [
        (["--visible-batch", "0"], "--visible-batch"),
        (["--visible-batch", "101"], "--visible-batch"),
        (["--visible-rate", "0"], "--visible-rate"),
        (["--visible-track-rate", "-1"], "--visible-track-rate"),
        (["--visible-duration", "0"], "--visible-duration"),
        (["--visible-track-duration", "601"], "--visible-track-duration"),
    ],
)
def test_a_bad_g_flag_is_refused_by_name(flags, names, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse_args(flags)
    assert exit_.value.code == 2
    assert names in capsys.readouterr().err


def test_the_g_defaults_are_the_issues_figure():
    args = parse_args([])
    assert (args.visible_rate, args.visible_duration, args.visible_batch) == (5000, 60, 15)
    assert (args.visible_track_rate, args.visible_track_duration) == (1000, 30)
    assert parse_args(["--visible-track-rate", "0", "--visible-batch", "1"]).visible_batch == 1


@pytest.mark.parametrize("rounds", ["0", "6"])
def test_worker_rounds_out_of_range_are_refused_by_name(rounds, capsys):
    with pytest.raises(SystemExit):
        parse_args(["--worker-rounds", rounds])
    assert "--worker-rounds" in capsys.readouterr().err


def test_d_rows_of_several_rounds_keep_the_median_ratio_and_its_round():
    from bench.persist import Timed
    from bench.run import persist_rows

    def timed(label: str, per_s: float) -> Timed:
        return Timed(label, 50_000, 50_000 / per_s, 16)

    copies = [timed("copy", 50_000), timed("copy", 40_000), timed("copy", 60_000)]
    # per round: 0.20, 0.30 (the machine was slow for both), 0.25
    batch = [timed("worker", 10_000), timed("worker", 12_000), timed("worker", 15_000)]
    rows = persist_rows(copies, [batch])
    assert rows[0]["role"] == "baseline" and rows[0]["events_per_s"] == pytest.approx(50_000)
    measured = rows[1]
    assert measured["round_ratios"] == [0.2, 0.3, 0.25]
    assert measured["ratio"] == pytest.approx(0.25)
    assert measured["events_per_s"] == pytest.approx(15_000)  # the median round's own run
    one = persist_rows(copies[:1], [batch[:1]])
    assert "ratio" not in one[1] and "round_ratios" not in one[1]
