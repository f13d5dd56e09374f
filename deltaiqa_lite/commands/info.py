"""``deltaiqa-lite info``: version, CPU integer capability, models and their cards, providers, codecs."""

from __future__ import annotations

import argparse
import json
import sys

HELP = ("show version, the CPU's INT8 capability, models and their cards (INT8 saturation safety), "
        "available execution providers and optional codecs")

# Transfer syntaxes real CT arrives in, and what decodes them.
CODEC_SYNTAXES = {
    "1.2.840.10008.1.2.4.70": "JPEG Lossless SV1",
    "1.2.840.10008.1.2.4.57": "JPEG Lossless",
    "1.2.840.10008.1.2.4.80": "JPEG-LS Lossless",
    "1.2.840.10008.1.2.4.90": "JPEG 2000 Lossless",
    "1.2.840.10008.1.2.4.91": "JPEG 2000",
    "1.2.840.10008.1.2.5": "RLE Lossless",
}
CODEC_PACKAGES = ("pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg", "python-gdcm", "pyjpegls",
                  "pynetdicom")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the information as JSON")


def collect() -> dict:
    """Everything ``info`` shows, as a dict."""
    import platform
    from importlib import metadata

    from deltaiqa_lite._version import __version__
    from deltaiqa_lite.model.card import read_card
    from deltaiqa_lite.model.cpu import cpu_info, saturation_risk
    from deltaiqa_lite.errors import ModelError
    from deltaiqa_lite.model.session import MODEL_NAMES, available_providers, model_dirs

    def version(package: str) -> str | None:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    cpu = cpu_info()
    models = []
    for key, file_name in MODEL_NAMES.items():
        found = next((d / file_name for d in model_dirs() if (d / file_name).is_file()), None)
        entry: dict = {"name": key, "path": str(found) if found else None}
        if found is None:
            entry["error"] = f"not found in {', '.join(str(d) for d in model_dirs())}"
        else:
            entry["size_mb"] = round(found.stat().st_size / 1e6, 2)
            try:
                entry["card"] = card = read_card(found)
                if str(card.get("precision")).lower() == "int8":
                    quantization = card.get("quantization") or {}
                    entry["saturation_safe"] = quantization.get("saturation_safe") is True
                    entry["saturation_risk_here"] = saturation_risk(card, cpu)
            except ModelError as error:
                entry["error"] = str(error)
        models.append(entry)
    from pydicom.pixels import get_decoder
    decoders = {}
    for uid, label in CODEC_SYNTAXES.items():
        decoder = get_decoder(uid)
        decoders[label] = list(decoder.available_plugins) if decoder.is_available else []
    onnxruntime_dist = next((d for d in ("onnxruntime", "onnxruntime-openvino", "onnxruntime-gpu")
                             if version(d)), None)
    return {
        "deltaiqa_lite": __version__,
        "python": platform.python_version(),
        "onnxruntime": {"distribution": onnxruntime_dist, "version": version(onnxruntime_dist or "onnxruntime"),
                        "providers": available_providers()},
        "pydicom": version("pydicom"),
        "cpu": cpu.to_dict(),
        "models": models,
        "codecs": {"packages": {p: version(p) for p in CODEC_PACKAGES}, "decoders": decoders},
    }


def _domain_line(card: dict) -> str:
    """What the ``outside-training`` flag checks slices against (docs/physics.md)."""
    from deltaiqa_lite.errors import ModelError
    from deltaiqa_lite.physics import V1_TRAINING_DOMAIN, TrainingDomain

    try:
        domain = TrainingDomain.from_card(card)
    except ModelError as error:
        return f"training domain: unreadable ({error})"
    # from_card returned the card's own domain, so training.domain is a JSON object here.
    regions = None if domain is V1_TRAINING_DOMAIN else card["training"]["domain"].get("regions")
    dw, fov = domain.water_equivalent_diameter_mm, domain.field_of_view_mm
    where = ("regions " + ", ".join(regions) if regions
             else f"{len(domain.body_parts)} body parts") + ("" if domain.head else ", no head")
    fallback = " (none in the card: the simulator v1 domain)" if domain is V1_TRAINING_DOMAIN else ""
    return (f"training domain{fallback}: {where}; Dw {dw[0]:g}-{dw[1]:g} mm; "
            f"field of view {fov[0]:g}-{fov[1]:g} mm")


def _card_line(card: dict) -> list[str]:
    prep = card.get("preprocessing", {})
    lines = [f"    {card.get('name')} {card.get('architecture')} v{card.get('architecture_version', '?')}, "
             f"model version {card.get('version', '?')}, precision {card.get('precision')}",
             f"    window centre {prep.get('window_centre_hu')} HU width {prep.get('window_width_hu')} HU, "
             f"input {prep.get('input_size')}, crop {prep.get('crop')}, resize {prep.get('resize')}",
             f"    labels {', '.join(card.get('class_labels', []))}"]
    training = card.get("training")
    if isinstance(training, dict):
        lines.append("    training: " + ", ".join(f"{k}={v}" for k, v in training.items()
                                                  if isinstance(v, (str, int, float)))[:200])
    lines.append("    " + _domain_line(card))
    metrics = card.get("metrics")
    if isinstance(metrics, dict) and metrics:
        flat = ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()
                         if isinstance(v, (str, int, float)))
        if flat:
            lines.append(f"    metrics: {flat[:200]}")
    if card.get("intended_use"):
        lines.append(f"    intended use: {card['intended_use']}")
    return lines


def run(args: argparse.Namespace) -> int:
    info = collect()
    if args.json:
        json.dump(info, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    out = sys.stdout
    out.write(f"deltaiqa-lite {info['deltaiqa_lite']} (python {info['python']}, pydicom {info['pydicom']})\n")
    ort = info["onnxruntime"]
    out.write(f"onnxruntime: {ort['distribution']} {ort['version']}; providers: {', '.join(ort['providers'])}\n")
    cpu = info["cpu"]
    flags = cpu["flags"]
    out.write(f"cpu: {cpu['model'] or cpu['machine']} ({cpu['machine']}; flags from {cpu['source']})\n")
    if any(flags.values()) or cpu["source"] != "unknown":
        out.write("  int8 flags: " + ", ".join(f"{flag} {'yes' if on else 'no'}" for flag, on in flags.items())
                  + "\n")
    out.write(f"  int8 kernel: {cpu['int8_kernel']}\n")
    out.write("models:\n")
    for model in info["models"]:
        if "card" in model:
            out.write(f"  {model['name']}: {model['path']} ({model['size_mb']} MB)\n")
            for line in _card_line(model["card"]):
                out.write(line + "\n")
            if "saturation_safe" in model:
                out.write("    int8 saturation-safe: " + (
                    "yes (" + str((model["card"].get("quantization") or {}).get("saturation", {})
                                  .get("scheme", "declared in its card")) + ")"
                    if model["saturation_safe"] else
                    "NO" + (": its sums can saturate on this CPU (no VNNI); use --model fp32"
                            if model["saturation_risk_here"] else
                            " (harmless on this CPU, which has VNNI or is not x86)")) + "\n")
        else:
            out.write(f"  {model['name']}: {model.get('error')}\n")
    out.write("codecs:\n")
    for package, version in info["codecs"]["packages"].items():
        out.write(f"  {package}: {version or 'not installed'}\n")
    for syntax, plugins in info["codecs"]["decoders"].items():
        state = ", ".join(plugins) if plugins else "missing: pip install 'deltaiqa-lite[codecs]'"
        out.write(f"  decode {syntax}: {state}\n")
    return 0
