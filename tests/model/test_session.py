"""Model lookup, model cards and execution-provider checks (real onnxruntime, no mocks)."""

from __future__ import annotations

import json
import shutil
import warnings

import pytest

from model_builders import CARD, make_tiny_model
from deltaiqa_lite.model.card import read_card, read_metadata
from deltaiqa_lite.errors import ModelError, ProviderError
from deltaiqa_lite.model.session import (PROVIDERS, _provider_options, available_providers, create_session,
                                   model_dirs, provider_chain, resolve_model)


def test_read_card_from_metadata_props(tiny_model):
    assert read_card(tiny_model) == CARD
    assert set(read_metadata(tiny_model)) == {"model_card"}


def test_card_parser_agrees_with_onnx(tiny_model):
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(tiny_model))
    assert read_metadata(tiny_model) == {p.key: p.value for p in model.metadata_props}


def test_card_errors(tmp_path):
    not_onnx = tmp_path / "junk.onnx"
    not_onnx.write_bytes(b"\xff" * 64)
    with pytest.raises(ModelError, match=r"junk\.onnx: not an ONNX model file"):
        read_card(not_onnx)
    incomplete = dict(CARD)
    del incomplete["class_labels"]
    incomplete["preprocessing"] = {"window_centre_hu": -300.0}
    path = make_tiny_model(tmp_path / "incomplete.onnx", card=incomplete)
    with pytest.raises(ModelError, match=r"model card lacks class_labels, preprocessing.window_width_hu, "
                                         r"preprocessing.input_size"):
        read_card(path)


def test_sidecar_card_only_when_none_embedded(tmp_path):
    path = make_tiny_model(tmp_path / "bare.onnx", card=None)
    sidecar = dict(CARD, name="from-sidecar")
    (tmp_path / "bare.card.json").write_text(json.dumps(sidecar))
    assert read_card(path)["name"] == "from-sidecar"
    embedded = make_tiny_model(tmp_path / "embedded.onnx")
    (tmp_path / "embedded.card.json").write_text(json.dumps(sidecar))
    assert read_card(embedded)["name"] == "tiny-test"


def test_resolve_model_names_and_paths(tmp_path, monkeypatch, tiny_model):
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(tiny_model, folder / "deltaiqa-int8.onnx")
    monkeypatch.setenv("DELTAIQA_LITE_MODEL_DIR", str(folder))
    assert resolve_model("int8") == folder / "deltaiqa-int8.onnx"
    assert resolve_model("INT8") == folder / "deltaiqa-int8.onnx"
    assert resolve_model(tiny_model) == tiny_model
    with pytest.raises(ModelError, match=r"nope\.onnx: model file not found \(give 'int8', 'fp32' or an \.onnx path\)"):
        resolve_model(tmp_path / "nope.onnx")
    monkeypatch.setenv("DELTAIQA_LITE_MODEL_DIR", str(tmp_path / "empty"))
    monkeypatch.chdir(tmp_path)
    if not any((d / "deltaiqa-fp32.onnx").is_file() for d in model_dirs()):  # only until models/ ships
        with pytest.raises(ModelError, match=r"deltaiqa-fp32\.onnx: shipped model 'fp32' not found \(searched "):
            resolve_model("fp32")


def test_provider_chain():
    assert provider_chain("cpu", ["CPUExecutionProvider"]) == ("cpu", ["CPUExecutionProvider"])
    assert provider_chain("auto", ["CPUExecutionProvider"])[0] == "cpu"
    assert provider_chain("auto", ["OpenVINOExecutionProvider", "CPUExecutionProvider"])[0] == "openvino"
    assert provider_chain("auto", ["TensorrtExecutionProvider", "CUDAExecutionProvider",
                                   "CPUExecutionProvider"])[0] == "cuda"
    assert provider_chain("tensorrt", [])[1] == PROVIDERS["tensorrt"]
    with pytest.raises(ProviderError, match=r"unknown provider 'rocm'; choose auto, cpu, openvino, tensorrt or cuda"):
        provider_chain("rocm", [])


def test_tensorrt_options_follow_precision(tmp_path):
    int8 = _provider_options("tensorrt", "int8", 8, 512, tmp_path / "trt")
    fp32 = _provider_options("tensorrt", "fp32", 4, 512, tmp_path / "trt")
    assert int8["trt_int8_enable"] is True and int8["trt_fp16_enable"] is False
    assert fp32["trt_int8_enable"] is False and fp32["trt_fp16_enable"] is True
    assert int8["trt_engine_cache_enable"] is True and int8["trt_engine_cache_path"] == str(tmp_path / "trt")
    assert (tmp_path / "trt").is_dir()
    assert fp32["trt_profile_min_shapes"] == "image:1x512x512x1"
    assert fp32["trt_profile_max_shapes"] == "image:4x512x512x1"
    assert _provider_options("cpu", "fp32", 8, 512, None) == {}


@pytest.mark.skipif("OpenVINOExecutionProvider" in available_providers(),
                    reason="this onnxruntime build has OpenVINO, so there is no fallback to observe")
def test_missing_provider_warns_and_strict_fails(tiny_model):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        session, info = create_session(tiny_model, provider="openvino")
    assert info.providers == ["CPUExecutionProvider"] and info.fallback
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1
    assert messages[0].startswith("provider 'openvino' (OpenVINOExecutionProvider) is not in this onnxruntime build")
    assert "pip uninstall onnxruntime" in messages[0] and messages[0].endswith("running on CPU")
    with pytest.raises(ProviderError, match=r"provider 'openvino' \(OpenVINOExecutionProvider\) is not in this"):
        create_session(tiny_model, provider="openvino", strict_provider=True)


def test_cpu_request_has_no_warning(tiny_model):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        session, info = create_session(tiny_model, provider="cpu", threads=1)
    assert info.providers == ["CPUExecutionProvider"] and not info.fallback
    with pytest.raises(ProviderError, match="threads must be >= 1"):
        create_session(tiny_model, provider="cpu", threads=0)


def test_unloadable_model(tmp_path):
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"\x08\x07")  # valid protobuf prefix, not a model graph
    with pytest.raises(ModelError, match=r"broken\.onnx: onnxruntime cannot load it"):
        create_session(path, provider="cpu")


def test_spinning_is_set_only_when_asked(tiny_model):
    key = "session.intra_op.allow_spinning"
    for spinning, expected in ((True, "1"), (False, "0")):
        session, _ = create_session(tiny_model, provider="cpu", threads=2, spinning=spinning)
        assert session.get_session_options().get_session_config_entry(key) == expected
    session, _ = create_session(tiny_model, provider="cpu", threads=2)
    with pytest.raises(RuntimeError, match="does not have configuration with key"):  # onnxruntime's default
        session.get_session_options().get_session_config_entry(key)
