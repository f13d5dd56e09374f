"""The model card: one JSON document, stored in the ONNX ``metadata_props`` and beside it.

The runtime reads its preprocessing and class labels from here (DESIGN.md
section 3), so the card is a contract, not decoration.
"""

from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path

from convert.card.domain import training_domain
from convert.train.model import ARCHITECTURE, ARCHITECTURE_VERSION, PARAMETER_COUNT
from deltaiqa_lite.model.preprocess import Preprocessing

CARD_KEY = "model_card"
CLASS_LABELS = ["bad", "poor", "fair", "good", "excellent"]
CLASS_MEANINGS = [
    "desired features not shown",
    "diagnostic interpretation impossible",
    "limited clinical interpretation",
    "suitable for diagnostic interpretation",
    "anatomy evident",
]
INTENDED_USE = (
    "Research and quality assurance on axial CT slices of real patients. Not for diagnosis. "
    "Not for non-CT images (PET, MRI, ...), non-axial or localizer images, or patient groups "
    "without prior local validation."
)


def tool_versions(names=("tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "numpy")) -> dict:
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def training_record(weights: Path) -> dict:
    """What is known about how the weights were made: metrics.json beside them, if any."""
    metrics_file = weights.parent / "metrics.json"
    if not metrics_file.exists():
        return {"source": "external weights; training unknown to this build"}
    report = json.loads(metrics_file.read_text())
    finetuned = "finetuned_from" in report
    record = {"source": "python -m convert " + ("finetune" if finetuned else "train"),
              "settings": report.get("settings"), "seed": report.get("seed"),
              "splits": report.get("splits")}
    if finetuned:
        record["finetuned_from"] = report["finetuned_from"]
        record["site_data"] = report.get("site_data")
        record["before"] = report.get("before")
    data = report.get("data")
    # A site fine-tune may name several image folders; a simulated data set is one folder.
    folders = [d for d in ([data] if isinstance(data, str) else (data or [])) if d]
    sim = Path(folders[0]) / "simulation.json" if len(folders) == 1 else None
    if sim is not None and sim.exists():
        simulation = json.loads(sim.read_text())
        summary = simulation["summary"]
        version = summary.get("version", 1)
        record["simulator_version"] = version
        record["data"] = {
            "kind": ("simulated CT v3: textured head, neck, chest, abdomen and pelvis phantoms, label drawn "
                     "uniformly and independently of anatomy, kernel-NPS noise on cached reconstructions "
                     "(convert/sim/simulate_v3.py)" if version == 3 else
                     "simulated CT v2: textured head, neck, chest, abdomen and pelvis phantoms, three "
                     "kernels (convert/sim/simulate_v2.py)" if version == 2 else
                     "simulated low-dose abdominal CT v1: ellipse phantoms (convert/sim/simulate.py)")
                    + ", not radiologist-scored",
            "labels": "monotone function of measured noise SD and streak RMS, steps of 0.2",
            **summary,
        }
        # What the runtime's outside-training flag checks against (docs/physics.md).
        record["domain"] = training_domain(simulation)
    return record


def add_training_domain(card: dict, simulation_json: str | Path | dict) -> dict:
    """Set ``card["training"]["domain"]`` from a data set's ``simulation.json``; return the card.

    For cards built before the domain was recorded: the runtime falls back to
    the v1 domain without it. Pass the ``simulation.json`` of the data the
    model was trained on (a path, or the document already loaded).

    Raises
    ------
    convert.sim.data.DataError
        The document does not allow deriving the domain (see :mod:`convert.card.domain`).
    """
    if not isinstance(simulation_json, dict):
        simulation_json = json.loads(Path(simulation_json).read_text())
    training = card.get("training")
    if not isinstance(training, dict):
        training = card["training"] = {}
    training["domain"] = training_domain(simulation_json)
    return card


# Version of the reference weights a build makes, by the simulator of its training
# data: 0.1.0 on v1 (ellipse abdomens), 0.2.0 on v2 (textured, five body regions),
# 0.3.0 on v3 (the label drawn independently of anatomy, padded fields of view).
MODEL_VERSIONS = {1: "0.1.0", 2: "0.2.0", 3: "0.3.0"}
# The shipped models' version: what weights exported from other data (a site's
# fine-tuned or adapted weights, which start from the shipped ones) carry.
MODEL_VERSION = MODEL_VERSIONS[3]


def model_version(training_data: str | Path | None) -> str:
    """The model version for weights trained on ``training_data`` (its ``simulation.json``).

    Data without a simulation record (a site's own, or none named) keep
    ``MODEL_VERSION``.
    """
    record = Path(training_data) / "simulation.json" if training_data else None
    if record is None or not record.exists():
        return MODEL_VERSION
    summary = json.loads(record.read_text()).get("summary", {})
    return MODEL_VERSIONS.get(summary.get("version"), MODEL_VERSION)


def build_card(*, precision: str, source_weights: Path, source_sha256: str,
               metrics: dict | None = None, quantization: dict | None = None,
               extra: dict | None = None, version: str = MODEL_VERSION) -> dict:
    card = {
        "name": "deltaiqa",
        "architecture": ARCHITECTURE,
        "architecture_version": ARCHITECTURE_VERSION,
        "parameters": PARAMETER_COUNT,
        "version": version,
        "precision": precision,
        "preprocessing": Preprocessing().to_card(),
        "class_labels": CLASS_LABELS,
        "class_meanings": CLASS_MEANINGS,
        "score": "sum_k k * p_k over Likert classes 0..4; class = argmax p",
        "inputs": {"image": "float32 [N, 512, 512, 1], NHWC, windowed CT in [0, 1]"},
        "outputs": {
            "probabilities": "float32 [N, 5], softmax over Likert classes 0..4",
            "conv5": "float32 [N, 30, 30, 256], conv5 activations after ReLU, for Grad-CAM",
        },
        "training": training_record(source_weights),
        "metrics": metrics or {},
        "quantization": quantization,
        "source_weights": source_weights.name,
        "source_weights_sha256": source_sha256,
        "tools": tool_versions(),
        "intended_use": INTENDED_USE,
    }
    if extra:
        card.update(extra)
    return card


def attach_card(model_proto, card: dict) -> None:
    """Write the card into ``metadata_props`` (replacing an older one) and the doc string."""
    for prop in list(model_proto.metadata_props):
        if prop.key == CARD_KEY:
            model_proto.metadata_props.remove(prop)
    entry = model_proto.metadata_props.add()
    entry.key = CARD_KEY
    entry.value = json.dumps(card, sort_keys=True)
    model_proto.doc_string = (f"{card['architecture']} v{card['architecture_version']} "
                              f"({card['precision']}): CT image quality on the LDCTIQAC 0-4 "
                              f"Likert scale. {INTENDED_USE}")
    model_proto.producer_name = "deltaiqa-lite convert"
    model_proto.model_version = 1


def read_card(model_proto) -> dict:
    for prop in model_proto.metadata_props:
        if prop.key == CARD_KEY:
            return json.loads(prop.value)
    raise KeyError(f"no '{CARD_KEY}' in metadata_props")
