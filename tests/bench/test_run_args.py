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
