"""Time to refuse a file from its header, per file (issue 13).

``python -m benchmarks.header_refusal [--repeats N] [--out FILE]``

What is timed, per hostile file built in memory from a real test object
(pydicom's ``CT_small.dcm``):

- ``read_qa_header`` + ``refusal_reason``: what ``watch`` and ``serve`` run on
  every file before deciding to score it (no pixel data read);
- ``read_dicom`` up to its refusal: the reader's header checks (sizes before any
  allocation or per-frame loop, value ranges) on files that pass the QA header.

The figure is the median over ``repeats`` rounds of each case, with the CPU
time of other processes during the run (/proc/stat) so a contended machine is
visible in the result.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag

from benchmarks.machine import load_average, machine_facts

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class RefusalTiming:
    """Median seconds per file for one hostile case."""

    case: str
    stage: str
    median_s: float
    refusal: str


def _raw(ds: pydicom.Dataset, keyword: str, vr: str, text: str) -> None:
    tag = Tag(pydicom.datadict.tag_for_keyword(keyword))
    value = text.encode("ascii")
    value += b" " * (len(value) % 2)
    ds._dict[tag] = RawDataElement(tag, vr, len(value), value, 0, False, True)


def hostile_cases(folder: Path) -> dict[str, tuple[str, Path]]:
    """Hostile variants of CT_small.dcm written to ``folder``: name -> (stage, path)."""
    source = Path(get_testdata_file("CT_small.dcm"))
    variants = {
        "frames-1e6 (39 KB file)": ("reader", ("NumberOfFrames", "IS", "1000000")),
        "frames-2e6": ("reader", ("NumberOfFrames", "IS", "2000000")),
        "frames-5000 (truncated)": ("reader", ("NumberOfFrames", "IS", "5000")),
        "rescale-slope-NaN": ("reader", ("RescaleSlope", "DS", "NaN")),
        "orientation-NaN": ("reader", ("ImageOrientationPatient", "DS", "NaN\\0\\0\\0\\1\\0")),
        "modality-MR": ("header", ("Modality", "CS", "MR")),
        "sop-uid-traversal": ("header", ("SOPInstanceUID", "UI", "1.2.3/../../x")),
    }
    cases = {}
    folder.mkdir(parents=True, exist_ok=True)
    for name, (stage, (keyword, vr, text)) in variants.items():
        ds = pydicom.dcmread(source)
        _raw(ds, keyword, vr, text)
        path = folder / (name.split()[0] + ".dcm")
        buffer = io.BytesIO()
        ds.save_as(buffer)
        path.write_bytes(buffer.getvalue())
        cases[name] = (stage, path)
    return cases


def time_refusal(stage: str, path: Path, repeats: int) -> tuple[float, str]:
    """Median seconds to refuse ``path`` at ``stage`` (``header`` or ``reader``), and why."""
    from deltaiqa_lite.errors import InputError
    from deltaiqa_lite.qa.header import read_qa_header, refusal_reason
    from deltaiqa_lite.read.dicom import read_dicom

    def once() -> str:
        if stage == "header":
            reason = refusal_reason(read_qa_header(path))
            if reason is None:
                raise AssertionError(f"{path.name} was not refused from the header")
            return reason
        try:
            list(read_dicom(path))
        except InputError as error:
            return error.reason
        raise AssertionError(f"{path.name} was not refused by the reader")

    times = []
    reason = ""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's VR warnings are not what is timed
        for _ in range(repeats):
            started = time.perf_counter()
            reason = once()
            times.append(time.perf_counter() - started)
    return statistics.median(times), reason


def _busy_jiffies() -> int:
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in fields]
    return sum(values) - values[3] - values[4]  # minus idle and iowait


def run(repeats: int, scratch: Path) -> tuple[list[RefusalTiming], dict]:
    """Time every case; also what the machine did meanwhile."""
    import os
    import resource

    busy_before, own_before = _busy_jiffies(), resource.getrusage(resource.RUSAGE_SELF)
    wall_started = time.monotonic()
    timings = []
    for name, (stage, path) in hostile_cases(scratch).items():
        median, reason = time_refusal(stage, path, repeats)
        timings.append(RefusalTiming(name, stage, median, reason))
    wall = time.monotonic() - wall_started
    own_after = resource.getrusage(resource.RUSAGE_SELF)
    ticks = os.sysconf("SC_CLK_TCK")
    busy_cpu_s = (_busy_jiffies() - busy_before) / ticks
    own_cpu_s = (own_after.ru_utime + own_after.ru_stime) - (own_before.ru_utime + own_before.ru_stime)
    context = {"wall_s": wall, "others_cpus": max(0.0, busy_cpu_s - own_cpu_s) / wall,
               "load_average": load_average()}
    return timings, context


def write_markdown(timings: list[RefusalTiming], context: dict, repeats: int, out: Path) -> None:
    facts = machine_facts()
    contended = context["others_cpus"] > 0.1
    lines = [
        "# Header refusal time per file",
        "",
        "`python -m benchmarks.header_refusal --repeats "
        f"{repeats}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        f"CPU: {facts['cpu_model']} ({facts['usable_cpus']} usable of {facts['logical_cpus']} "
        f"logical CPUs); Python {facts['python']}, pydicom {pydicom.__version__}.",
        f"Machine {'CONTENDED' if contended else 'quiet'}: other processes used "
        f"{context['others_cpus']:.2f} CPUs on average during the run (load average "
        f"{context['load_average']}); treat the figures as upper bounds.",
        "",
        "Hostile variants of pydicom's `CT_small.dcm` (39 KB, 128 x 128). Median of "
        f"{repeats} rounds.",
        "",
        "| case | refused by | median per file | reason |",
        "|------|------------|-----------------|--------|",
    ]
    for t in timings:
        reason = t.refusal if len(t.refusal) <= 90 else t.refusal[:87] + "..."
        lines.append(f"| {t.case} | {t.stage} | {t.median_s * 1e3:.2f} ms | {reason} |")
    lines += ["", "Before issue 13 the 10^6-frame file took 80-114 s and 630 MB in the reader "
                  "(the per-frame loop ran before the size check).", ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    import tempfile

    parser = argparse.ArgumentParser(prog="python -m benchmarks.header_refusal", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "header-refusal.md")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        timings, context = run(args.repeats, Path(scratch))
    write_markdown(timings, context, args.repeats, args.out)
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
