"""``deltaiqa-lite explain PATH... --output DIR``: Grad-CAM overlays of what drove each score."""

from __future__ import annotations

import argparse
import json
import sys

from deltaiqa_lite.commands._args import add_model_arguments, hu_window, unit_interval

HELP = ("Grad-CAM maps on conv5 (as the original Delta-IQA draws them), as PNG overlays on the "
        "windowed slice; runs the FP32 model")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="DICOM files or folders (recursive), .tif/.tiff (LDCTIQAC), .npy (HU)")
    parser.add_argument("-o", "--output", required=True, metavar="DIR",
                        help="folder for <input>.gradcam.png (created if missing)")
    add_model_arguments(parser, default_model="fp32", batch_size=4,
                        model_help="'fp32' (default) or an FP32 .onnx file with a conv5 output; "
                                   "Grad-CAM does not run on INT8 models")
    parser.add_argument("--save-map", action="store_true",
                        help="also write the map as <input>.gradcam.npy (float32, input size, "
                             "NaN outside the centre square the model saw)")
    parser.add_argument("--alpha", type=unit_interval, default=None, metavar="A",
                        help="weight of the colour map in the overlay, 0..1 (default 0.4)")
    parser.add_argument("--format", choices=("table", "json"), default="table",
                        help="summary on stdout (default table)")
    parser.add_argument("--image-window", type=hu_window, default=None, metavar="CENTRE,WIDTH",
                        help="window (HU) that plain images (PNG, JPEG, integer TIFF) were saved with")


def run(args: argparse.Namespace) -> int:
    from deltaiqa_lite.explain import Explainer, write_explanation

    explainer = Explainer(args.model, provider=args.provider, threads=args.threads,
                          batch_size=args.batch_size, image_window=args.image_window)
    records = []
    failed = 0
    if args.format == "table":
        print(f"# Grad-CAM on conv5, model {explainer.model_name} ({explainer.model_path})")
        print(f"{'input':<48} {'score':>5} {'class':<11} {'map':<5} output")
    for explanation in explainer.iter_paths(args.paths):
        if explanation.status != "ok":
            failed += 1
            print(f"deltaiqa-lite: {explanation.error}", file=sys.stderr)
            records.append({"path": explanation.path, "frame": explanation.frame, "status": "error",
                            "error": explanation.error})
            continue
        files = write_explanation(explanation, args.output, save_map=args.save_map, alpha=args.alpha)
        map_note = "empty" if explanation.empty_map else "ok"
        if explanation.empty_map:
            print(f"deltaiqa-lite: warning: {explanation.name}: Grad-CAM map is zero everywhere "
                  "(no positive evidence for the predicted class in conv5)", file=sys.stderr)
        records.append({"path": explanation.path, "frame": explanation.frame, "status": "ok",
                        "score": explanation.score, "likert": explanation.likert,
                        "label": explanation.label, "explained_class": explanation.explained_class,
                        "empty_map": explanation.empty_map, "files": [str(f) for f in files]})
        if args.format == "table":
            print(f"{explanation.name:<48} {explanation.score:5.2f} "
                  f"{explanation.likert} {explanation.label:<9} {map_note:<5} {files[0]}")
    if args.format == "json":
        json.dump({"tool": "deltaiqa-lite explain", "model": explainer.model_name,
                   "model_path": explainer.model_path, "method": "grad-cam conv5, predicted class",
                   "slices": records}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    return 1 if failed else 0
