"""The model version follows the simulator of the training data."""

import json

from convert.card.card import MODEL_VERSION, model_version


def _data(tmp_path, name, summary):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "simulation.json").write_text(json.dumps({"summary": summary, "slices": []}))
    return folder


def test_v3_data_make_0_3_0_and_v2_data_0_2_0(tmp_path):
    assert model_version(_data(tmp_path, "v3", {"version": 3})) == "0.3.0"
    assert model_version(_data(tmp_path, "v2", {"version": 2})) == "0.2.0"


def test_data_without_a_simulation_record_keep_the_default(tmp_path):
    assert model_version(None) == MODEL_VERSION
    assert model_version(tmp_path) == MODEL_VERSION                     # a site's own folder
    assert model_version(_data(tmp_path, "unknown", {"version": 9})) == MODEL_VERSION
