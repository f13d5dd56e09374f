"""Label readers for the three formats, and matching labels to inputs."""

from __future__ import annotations

import json

import pytest

from deltaiqa_lite.validate.labels import LabelError, LabelKey, match_labels, read_labels


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_flat_json_like_ldctiqac_train(tmp_path):
    path = _write(tmp_path, "train.json", json.dumps({"0000.tif": 2.8, "0001.tif": 0, "0002.tif": 4.0}))
    labels = read_labels(path)
    assert labels.format == "json-flat"
    assert labels.scores == {LabelKey("0000.tif"): 2.8, LabelKey("0001.tif"): 0.0,
                             LabelKey("0002.tif"): 4.0}


def test_stacked_json_like_ldctiqac_ground_truth(tmp_path):
    path = _write(tmp_path, "ground-truth.json",
                  json.dumps({"valid_0.tif": {"scores": [1.2, 3.4, 2.0]},
                              "valid_1.tif": {"scores": [0.6]}}))
    labels = read_labels(path)
    assert labels.format == "json-stacked"
    assert labels.scores[LabelKey("valid_0.tif", 1)] == 3.4
    assert labels.scores[LabelKey("valid_1.tif", 0)] == 0.6
    assert len(labels) == 4


def test_csv_with_and_without_frame(tmp_path):
    plain = read_labels(_write(tmp_path, "site.csv",
                               "file,score\nscans/CT0001.dcm,2.6\nCT0002.dcm, 3\n\n"))
    assert plain.format == "csv"
    assert plain.scores == {LabelKey("CT0001.dcm"): 2.6, LabelKey("CT0002.dcm"): 3.0}
    framed = read_labels(_write(tmp_path, "framed.csv",
                                "file,frame,score\nstack.tif,0,1.0\nstack.tif,1,2.2\n"))
    assert framed.scores == {LabelKey("stack.tif", 0): 1.0, LabelKey("stack.tif", 1): 2.2}


def test_windows_paths_in_labels_match_by_name(tmp_path):
    labels = read_labels(_write(tmp_path, "w.csv", "file,score\nC:\\data\\ct\\a.dcm,1.4\n"))
    assert labels.scores == {LabelKey("a.dcm"): 1.4}


@pytest.mark.parametrize("name,text,message", [
    ("bad.json", "{not json", r"bad\.json: not valid JSON"),
    ("list.json", "[1, 2]", "expected a JSON object"),
    ("range.json", '{"a.tif": 4.6}', r"'a\.tif': score 4\.6 is outside the Likert range 0\.\.4"),
    ("nan.json", '{"a.tif": "high"}', "score 'high' is not a number"),
    ("stack.json", '{"v.tif": {"score": [1]}}', r"expected \{\"scores\""),
    ("dup.json", '{"a/x.tif": 1, "b/x.tif": 2}', r"x\.tif is labelled twice"),
    ("header.csv", "name,quality\na.dcm,1\n", "expected 'file,score'"),
    ("short.csv", "file,frame,score\na.tif,1\n", "line 2: expected 3 columns"),
    ("frame.csv", "file,frame,score\na.tif,x,1\n", "line 2: frame 'x' is not an integer"),
    ("value.csv", "file,score\na.dcm,\n", "line 2: score '' is not a number"),
    ("labels.txt", "a 1\n", "unknown label format '.txt'"),
])
def test_malformed_label_files_name_the_file_and_entry(tmp_path, name, text, message):
    path = _write(tmp_path, name, text)
    with pytest.raises(LabelError, match=message) as caught:
        read_labels(path)
    assert str(caught.value).startswith(str(path))


def test_missing_label_file(tmp_path):
    with pytest.raises(LabelError, match="no such label file"):
        read_labels(tmp_path / "absent.json")


def test_matching_reports_unlabelled_inputs_and_unused_labels(tmp_path):
    labels = read_labels(_write(tmp_path, "gt.json", json.dumps({
        "0000.tif": 2.8, "0001.tif": 1.0, "9999.tif": 3.0,
        "valid_0.tif": {"scores": [1.0, 2.0, 3.0]}})))
    inputs = [("/data/images/0000.tif", None),
              ("/data/images/0001.tif", 0),        # single page, labelled without frame
              ("/data/images/0002.tif", None),      # no label
              ("/data/valid_0.tif", 0),
              ("/data/valid_0.tif", 1)]             # page 2 not given as input
    match = match_labels(inputs, labels)
    assert match.pairs == {0: LabelKey("0000.tif"), 1: LabelKey("0001.tif"),
                           3: LabelKey("valid_0.tif", 0), 4: LabelKey("valid_0.tif", 1)}
    assert match.unlabelled == [2]
    assert match.unused == [LabelKey("9999.tif"), LabelKey("valid_0.tif", 2)]


def test_flat_label_does_not_match_pages_of_a_stack(tmp_path):
    labels = read_labels(_write(tmp_path, "gt.json", json.dumps({"valid_0.tif": 2.0})))
    match = match_labels([("valid_0.tif", 0), ("valid_0.tif", 1)], labels)
    assert match.pairs == {}
    assert match.unlabelled == [0, 1]
    assert match.unused == [LabelKey("valid_0.tif")]


def test_inputs_sharing_a_file_name_are_refused(tmp_path):
    labels = read_labels(_write(tmp_path, "gt.csv", "file,score\nIM0001,2\n"))
    with pytest.raises(LabelError, match="share the file name 'IM0001'"):
        match_labels([("a/IM0001", None), ("b/IM0001", None)], labels)
