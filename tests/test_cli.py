"""The flexsk command line: bad arguments get a usage error, not a traceback."""

import pytest

from flexsk.cli import build_parser, int_at_least


@pytest.mark.parametrize("argv, message", [
    (["demo", "--n-per-class", "0"], "--n-per-class: expected an integer >= 1 and <= 40, got 0"),
    (["demo", "--n-per-class", "41"], "<= 40, got 41"),
    (["demo", "--image-size", "15"], "--image-size: expected an integer >= 8 and a multiple of 8"),
    (["demo", "--image-size", "0"], "--image-size"),
    (["demo", "--max-epochs", "0"], "--max-epochs: expected an integer >= 1, got 0"),
    (["demo", "--patience", "-1"], "--patience"),
    (["demo", "--threads", "0"], "--threads: expected an integer >= 1, got 0"),
    (["demo", "--threads", "two"], "expected an integer, got 'two'"),
    (["bench", "--threads", "0"], "--threads: expected an integer >= 1, got 0"),
])
def test_bad_arguments_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_demo_defaults_parse():
    args = build_parser().parse_args(["demo"])
    assert (args.n_per_class, args.image_size, args.max_epochs, args.patience,
            args.threads) == (2, 16, 100, 10, 1)


def test_int_at_least_accepts_valid_values():
    assert int_at_least(8, multiple_of=8)("24") == 24
    assert int_at_least(1, at_most=40)("40") == 40


def test_version(capsys):
    import flexsk

    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"flexsk {flexsk.__version__}"
