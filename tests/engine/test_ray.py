"""The Ray engine on a local Ray (2 CPUs, started here): same rows as the local engine, exactly once.

Kept few and lean: the machine is small and shared. Ray's workers inherit
PYTHONPATH, so they import this checkout's deltaiqa_lite.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from deltaiqa_lite.cli import main
from deltaiqa_lite.engine import score_to_file
from deltaiqa_lite.engine.local import LocalEngine
from deltaiqa_lite.score import Scorer
from dicom_builders import ct_dataset, phantom_hu, save

ray = pytest.importorskip("ray", reason="the Ray engine needs the 'ray' extra")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield
    ray.shutdown()


def make_inputs(folder: Path, n: int) -> list[Path]:
    """``n`` small CT files in series of 50 (64x64 phantoms); every 97th is not DICOM, every 89th is MR."""
    folder.mkdir(parents=True, exist_ok=True)
    series = [generate_uid() for _ in range(n // 50 + 1)]
    files = []
    for k in range(n):
        path = folder / f"{k:05d}.dcm"
        if k % 97 == 13:
            path.write_bytes(b"not DICOM " * k)
        else:
            hu = phantom_hu(64, 64, seed=k) + (k % 50) * 8.0
            save(ct_dataset(hu, series_uid=series[k // 50], ipp=(0, 0, k % 50), instance_number=k % 50 + 1,
                            modality="MR" if k % 89 == 7 else "CT", seed=k), path)
        files.append(path)
    return files


def rows_of(path: Path) -> dict[tuple[str, int | None], dict]:
    """Slice rows by (path, frame), failing if any key is there twice."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    slices = [r for r in rows if r["type"] == "slice"]
    keys = Counter((r["path"], r["frame"]) for r in slices)
    assert max(keys.values()) == 1, [k for k, c in keys.items() if c > 1][:5]
    return {(r["path"], r["frame"]): r for r in slices}


def ray_engine(tiny_model, **options):
    from deltaiqa_lite.engine.ray import RayEngine
    return RayEngine(str(tiny_model), provider="cpu", batch_size=8, **options)


@pytest.mark.slow
def test_ray_matches_local_on_1000_files(tmp_path, tiny_model, local_ray):
    files = make_inputs(tmp_path / "in", 1000)
    local_out, ray_out = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    score_to_file([tmp_path / "in"], local_out, LocalEngine(Scorer(tiny_model, provider="cpu", batch_size=8)))
    engine = ray_engine(tiny_model)
    try:
        assert [info["intra_op_threads"] for info in engine.actor_info] == [2]  # not Ray's OMP_NUM_THREADS=1
        summary = score_to_file([tmp_path / "in"], ray_out, engine)
    finally:
        engine.close()
    local, remote = rows_of(local_out), rows_of(ray_out)
    assert set(local) == set(remote) == {(str(f), None) for f in files}
    for key, expected in local.items():
        got = remote[key]
        assert (got["status"], got["error"], got["likert"]) == (expected["status"], expected["error"],
                                                                expected["likert"]), key
        if expected["score"] is None:
            assert got["score"] is None
        else:
            assert abs(got["score"] - expected["score"]) <= 1e-6, key
    n_failed = sum(r["status"] == "error" for r in local.values())
    assert n_failed == summary.n_failed and 10 < n_failed < 30
    series = [json.loads(line) for line in ray_out.read_text().splitlines() if '"type": "series"' in line]
    assert sum(s["n_slices"] for s in series) == 1000


def test_killed_actor_restarts_and_every_input_once(tmp_path, tiny_model, local_ray):
    files = make_inputs(tmp_path / "in", 160)
    engine = ray_engine(tiny_model, chunk_files=8, max_restarts=2)
    killed = []

    def kill_once(state):
        if state.files_done >= 40 and not killed:
            killed.append(engine.actor_info[0]["pid"])
            ray.kill(engine.actors[0], no_restart=False)

    try:
        # Ray sets OMP_NUM_THREADS=1 in workers; the session must still use the actor's CPUs.
        assert [info["intra_op_threads"] for info in engine.actor_info] == [2]
        score_to_file([tmp_path / "in"], tmp_path / "out.jsonl", engine, progress=kill_once)
        restarted = ray.get(engine.actors[0].info.remote())["pid"]
    finally:
        engine.close()
    assert killed and restarted != killed[0]  # the actor really died and came back
    assert set(rows_of(tmp_path / "out.jsonl")) == {(str(f), None) for f in files}


def test_resume_after_interrupted_ray_run(tmp_path, tiny_model, local_ray, capsys):
    files = make_inputs(tmp_path / "in", 120)
    target = tmp_path / "out.csv"
    engine = ray_engine(tiny_model, chunk_files=8)

    def interrupt(state):
        if state.files_done >= 40:
            raise KeyboardInterrupt

    try:
        with pytest.raises(KeyboardInterrupt):
            score_to_file([tmp_path / "in"], target, engine, progress=interrupt)
    finally:
        engine.close()
    first = target.read_text().splitlines()
    assert 40 < len(first) <= 121
    code = main(["score", str(tmp_path / "in"), "--engine", "ray", "--model", str(tiny_model),
                 "--provider", "cpu", "-o", str(target), "--resume", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1  # the non-DICOM and MR inputs failed, as in the local engine
    assert f"{len(first) - 1} files already there" in err
    lines = target.read_text().splitlines()
    assert lines[:len(first)] == first  # the first run's rows are kept as they were
    paths = Counter(line.split(",")[0] for line in lines[1:])
    assert set(paths) == {str(f) for f in files} and max(paths.values()) == 1


def test_manifest_with_missing_and_unreadable_entries(tmp_path, tiny_model, local_ray, capsys):
    files = make_inputs(tmp_path / "in", 6)
    truncated = tmp_path / "in" / "truncated.dcm"
    truncated.write_bytes(files[0].read_bytes()[:400])
    manifest = tmp_path / "export.csv"
    manifest.write_text("accession,path\n" + "".join(f"A{k},in/{f.name}\n" for k, f in enumerate(files))
                        + "A7,in/gone.dcm\nA8,in/truncated.dcm\n")
    target = tmp_path / "out.jsonl"
    code = main(["score", str(manifest), "--engine", "ray", "--model", str(tiny_model), "--provider", "cpu",
                 "-o", str(target), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    rows = rows_of(target)
    assert len(rows) == 8
    gone = rows[(str(tmp_path / "in/gone.dcm"), None)]
    assert gone["status"] == "error" and gone["error"] == f"{tmp_path / 'in/gone.dcm'}: no such file or folder"
    broken = rows[(str(truncated), None)]
    assert broken["status"] == "error" and broken["error"].startswith(f"{truncated}: ")
    assert all(rows[(str(f), None)]["status"] == "ok" for f in files)
    for row in (gone, broken):
        assert f"deltaiqa-lite: {row['error']}" in err


def test_actor_start_failure_is_one_line(tmp_path, local_ray, capsys):
    make_inputs(tmp_path / "in", 2)
    missing = tmp_path / "no-such-model.onnx"
    code = main(["score", str(tmp_path / "in"), "--engine", "ray", "--model", str(missing),
                 "--provider", "cpu", "-o", str(tmp_path / "out.jsonl"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1] == f"deltaiqa-lite: error: scoring actors failed to start: {missing}: model file not found " \
                      "(give 'int8', 'fp32' or an .onnx path)"
