"""The Scorer's defaults per CPU count (threads, spinning, batch size, reader threads)."""

from __future__ import annotations

import os

import pytest

from deltaiqa_lite.score import (MEASURED_DEFAULTS, UNMEASURED_DEFAULTS, PipelineDefaults, Scorer,
                                 pipeline_defaults, usable_cpus)

SPINNING = "session.intra_op.allow_spinning"


def test_measured_rows_and_the_fallbacks():
    for cpus, row in MEASURED_DEFAULTS.items():
        assert pipeline_defaults(cpus) == row
        assert row.threads is not None and row.threads <= cpus
    assert pipeline_defaults(max(MEASURED_DEFAULTS) + 1) == UNMEASURED_DEFAULTS
    assert pipeline_defaults(0) == MEASURED_DEFAULTS[min(MEASURED_DEFAULTS)]
    assert pipeline_defaults() == pipeline_defaults(usable_cpus())


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="affinity masks are Linux-only")
def test_usable_cpus_follows_the_affinity_mask():
    assert usable_cpus() == len(os.sched_getaffinity(0))


def test_scorer_takes_the_row_of_this_machine_unless_told(tiny_model):
    row: PipelineDefaults = pipeline_defaults()
    scorer = Scorer(tiny_model, provider="cpu")
    options = scorer.session.get_session_options()
    assert (scorer.batch_size, scorer.reader_threads, scorer.spinning) == (row.batch_size, row.reader_threads,
                                                                          row.spinning)
    if row.threads is not None:
        assert options.intra_op_num_threads == row.threads
    if row.spinning is not None:
        assert options.get_session_config_entry(SPINNING) == ("1" if row.spinning else "0")
    told = Scorer(tiny_model, provider="cpu", threads=1, batch_size=3, reader_threads=1, spinning=True)
    assert (told.batch_size, told.reader_threads, told.spinning) == (3, 1, True)
    assert told.session.get_session_options().intra_op_num_threads == 1
    assert told.session.get_session_options().get_session_config_entry(SPINNING) == "1"
