"""Shared CLI options (deltaiqa_lite.commands._args): argparse types, model options, warnings, imports."""

from __future__ import annotations

import argparse
import subprocess
import sys
import warnings

import pytest

from deltaiqa_lite.cli import main
from deltaiqa_lite.commands._args import (
    PROVIDERS,
    add_inference_arguments,
    add_model_arguments,
    hu_window,
    non_negative_int,
    positive_float,
    positive_int,
    unit_interval,
    warnings_to_stderr,
)


@pytest.mark.parametrize("parse, text, value", [
    (positive_int, "3", 3),
    (non_negative_int, "0", 0),
    (positive_float, "0.5", 0.5),
    (unit_interval, "0", 0.0),
    (unit_interval, "1", 1.0),
    (hu_window, "-300,1400", (-300.0, 1400.0)),
])
def test_types_accept(parse, text, value):
    assert parse(text) == value


@pytest.mark.parametrize("parse, text, message", [
    (positive_int, "two", "expected a whole number, got 'two'"),
    (positive_int, "0", "must be >= 1, got 0"),
    (positive_int, "1.5", "expected a whole number, got '1.5'"),
    (non_negative_int, "-1", "must be >= 0, got -1"),
    (positive_float, "x", "expected a number, got 'x'"),
    (positive_float, "0", "must be > 0, got 0"),
    (unit_interval, "1.2", "must lie in 0..1, got 1.2"),
    (unit_interval, "a", "expected a number in 0..1, got 'a'"),
    (hu_window, "40", r"expected CENTRE,WIDTH in HU \(e.g. -300,1400\), got '40'"),
    (hu_window, "40,400,1", "expected CENTRE,WIDTH in HU"),
    (hu_window, "40,0", "window width must be > 0, got 0"),
])
def test_types_reject_with_message(parse, text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        parse(text)


def test_model_arguments_defaults():
    parser = argparse.ArgumentParser()
    add_model_arguments(parser)
    args = parser.parse_args([])
    assert (args.model, args.provider, args.batch_size, args.threads) == ("int8", "auto", 8, None)
    assert not hasattr(args, "strict_provider")
    assert parser.parse_args(["--threads", "2", "--provider", "cpu"]).threads == 2
    with pytest.raises(SystemExit):
        parser.parse_args(["--provider", "rocm"])


def test_model_arguments_variants():
    parser = argparse.ArgumentParser()
    add_model_arguments(parser, default_model="fp32", model_help="FP32 only", strict_provider=True,
                        batch_size=4)
    args = parser.parse_args(["--strict-provider"])
    assert (args.model, args.batch_size, args.strict_provider) == ("fp32", 4, True)
    assert "slices per inference call (4)" in parser.format_help()
    assert "FP32 only" in parser.format_help()


def test_inference_arguments_alone():
    parser = argparse.ArgumentParser()
    add_inference_arguments(parser)
    args = parser.parse_args(["--batch-size", "16"])
    assert vars(args) == {"batch_size": 16, "threads": None}


def test_provider_choices_match_the_session():
    from deltaiqa_lite.model.session import PROVIDERS as SESSION_PROVIDERS

    assert PROVIDERS[0] == "auto" and set(PROVIDERS[1:]) == set(SESSION_PROVIDERS)


@pytest.mark.parametrize("command, defaults", [
    ("score", {"model": "int8", "batch_size": 8, "strict_provider": False}),
    ("explain", {"model": "fp32", "batch_size": 4}),
    ("evaluate", {"model": "int8", "batch_size": 8}),
    ("watch", {"model": "int8", "batch_size": 8}),
    ("serve", {"model": "int8", "batch_size": 8}),
])
def test_commands_keep_their_defaults(command, defaults):
    from deltaiqa_lite.cli import _parser

    parser, _module = _parser(command)
    argv = {"score": ["score", "x.dcm"], "explain": ["explain", "x.dcm", "-o", "out"],
            "evaluate": ["evaluate", "x.dcm", "--labels", "l.csv"], "watch": ["watch", "dir"],
            "serve": ["serve"]}[command]
    args = parser.parse_args(argv)
    assert {key: getattr(args, key) for key in defaults} == defaults
    assert args.provider == "auto" and args.threads is None


def test_bad_option_value_is_usage_error(capsys):
    assert main(["compare", "x.dcm", "--threads", "0"]) == 2
    assert "argument --threads: must be >= 1, got 0" in capsys.readouterr().err


def test_warnings_to_stderr(capsys):
    with warnings_to_stderr():
        warnings.warn("provider 'cuda' fell back to cpu", RuntimeWarning, stacklevel=1)
    assert capsys.readouterr().err == "deltaiqa-lite: warning: provider 'cuda' fell back to cpu\n"


def test_imports_only_the_standard_library():
    probe = ("import sys; before = set(sys.modules); import deltaiqa_lite.commands._args; "
             "print(sorted(m for m in set(sys.modules) - before if m.split('.')[0] not in "
             "sys.stdlib_module_names))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                          timeout=60)
    assert done.stdout.strip() == ("['deltaiqa_lite', 'deltaiqa_lite._version', 'deltaiqa_lite.commands', "
                                   "'deltaiqa_lite.commands._args']")
