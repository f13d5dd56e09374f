"""``python -m convert``: the build pipeline, each step alone or all in one go.

    python -m convert simulate --out DIR --count N --seed S [--version 2|1]
    python -m convert train DATA --out DIR [--preset reference|original]
    python -m convert export --weights W --output M.onnx
    python -m convert quantize --model M.onnx --calibration DIR --output M-int8.onnx
    python -m convert all --out models/ [--sim-version 3] [--finetune-from W]
    python -m convert finetune --weights W --data DIR --output OUT
    python -m convert finetune --weights W --labels FILE --data DIR [DIR ...] --output OUT
    python -m convert adapt --data PATH [PATH ...] --output DIR [--models models/]
    python -m convert real-anatomy --models models/
"""

from __future__ import annotations

import argparse
import sys


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _cmd_simulate(args: argparse.Namespace) -> int:
    if args.version == 3:
        from convert.sim.simulate_v3 import SAMPLES_PER_PHANTOM, SimulationError, simulate_dataset

        try:
            simulate_dataset(args.out, args.count, seed=args.seed, workers=args.workers,
                             variants=args.variants or SAMPLES_PER_PHANTOM, priors=args.priors, log=_log)
        except SimulationError as exc:
            _log(f"simulate: error: {exc}")
            return 1
        return 0
    if args.priors:
        _log("simulate: --priors applies to --version 3")
        return 2
    if args.version == 2:
        from convert.sim.simulate_v2 import simulate_dataset
    else:
        from convert.sim.simulate import simulate_dataset

    options = {"variants": args.variants} if args.variants else {}
    simulate_dataset(args.out, args.count, seed=args.seed, workers=args.workers, log=_log, **options)
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from convert.train.train import train

    train(args.data, args.out, preset=args.preset, seed=args.seed, epochs=args.epochs,
          time_budget_s=args.time_budget, resume=args.resume, log=_log)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from convert.quant.export import export_command

    export_command(args.weights, args.output, verify_data=args.verify_data,
                   verify_count=args.verify_count, card_extra=args.card, log=_log)
    return 0


def _cmd_quantize(args: argparse.Namespace) -> int:
    from convert.quant.quantize import quantize_command

    return quantize_command(args.model, args.calibration, args.output, test_data=args.test_data,
                            calibration_count=args.calibration_count, method=args.method,
                            compare=args.compare, weights=args.weights,
                            equalize_ranges=args.equalize, log=_log)


def _cmd_all(args: argparse.Namespace) -> int:
    from convert.pipeline import run_all

    options = {key: getattr(args, key) for key in ("steps", "patience", "eval_every", "max_eval",
                                                    "quantize_method") if getattr(args, key) is not None}
    return run_all(args.out, work=args.work, count=args.count, seed=args.seed,
                   preset=args.preset, time_budget_s=args.time_budget, sim_version=args.sim_version,
                   finetune_from=args.finetune_from, finetune_options=options, workers=args.workers,
                   log=_log)


def _cmd_finetune(args: argparse.Namespace) -> int:
    from convert.sim.data import DataError
    from convert.pipeline import finetune_command
    from convert.train.model import WeightsError
    from deltaiqa_lite.errors import DeltaIQAError

    try:
        return finetune_command(args.weights, args.data, args.output, labels=args.labels,
                                image_window=args.image_window, seed=args.seed, steps=args.steps,
                                time_budget_s=args.time_budget, patience=args.patience,
                                resume=args.resume, eval_every=args.eval_every, batch=args.batch,
                                crop=args.crop,
                                quantize_method=args.quantize_method, log=_log)
    except (DataError, WeightsError, DeltaIQAError) as exc:
        # Bad site data, labels or weights: one line, exit 2 (as a usage error), no traceback.
        _log(f"finetune: error: {exc}")
        return 2


def _cmd_adapt(args: argparse.Namespace) -> int:
    from convert.adapt import adapt_command
    from convert.sim.data import DataError
    from convert.train.model import WeightsError
    from deltaiqa_lite.errors import DeltaIQAError

    try:
        return adapt_command(args.data, args.output, models=args.models, seed=args.seed,
                             samples_per_slice=args.samples_per_slice, steps=args.steps,
                             time_budget_s=args.time_budget, patience=args.patience,
                             eval_every=args.eval_every, batch=args.batch, crop=args.crop,
                             max_eval=args.max_eval, real_anatomy=not args.no_real_anatomy,
                             quantize_method=args.quantize_method, log=_log)
    except (DataError, WeightsError, DeltaIQAError) as exc:
        _log(f"adapt: error: {exc}")
        return 2


def _cmd_real_anatomy(args: argparse.Namespace) -> int:
    from convert.checks.real_anatomy import check_command

    return check_command(args.models, args.metrics, log=_log)


def build_parser() -> argparse.ArgumentParser:
    from deltaiqa_lite.commands._args import hu_window

    parser = argparse.ArgumentParser(prog="python -m convert", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("simulate", help="write a simulated LDCTIQAC-format training folder")
    p.add_argument("--out", required=True)
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1,
                   help="processes (default 1: the back-projector already uses every core)")
    p.add_argument("--version", type=int, choices=(1, 2, 3), default=2,
                   help="simulator: 3 textured phantoms with the label drawn independently of anatomy "
                        "(noise added to cached reconstructions), 2 textured multi-region phantoms "
                        "(default), 1 ellipse abdomens")
    p.add_argument("--variants", type=int, default=None,
                   help="slices per phantom (default: 4 for v1/v2, 252 for v3)")
    p.add_argument("--priors", action="store_true",
                   help="v3 only: realistic protocol priors (quiet heads) instead of uniform labels; "
                        "for studies, refused for training")
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser("train", help="train Delta-IQA on an LDCTIQAC-format folder")
    p.add_argument("data")
    p.add_argument("--out", required=True)
    p.add_argument("--preset", choices=("reference", "original"), default="reference")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    p.add_argument("--time-budget", type=float, default=None,
                   help="stop after this many seconds of training (checkpoints are kept)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.weights.h5")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("export", help="Keras weights -> ONNX FP32, verified against Keras")
    p.add_argument("--weights", required=True, help=".weights.h5 (original or ours) or .keras")
    p.add_argument("--output", required=True)
    p.add_argument("--verify-data", default=None,
                   help="folder of slices for the Keras/ONNX check (default: generated)")
    p.add_argument("--verify-count", type=int, default=32)
    p.add_argument("--card", default=None, help="JSON file merged into the model card")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("quantize", help="static INT8 QDQ quantization with an accuracy gate")
    p.add_argument("--model", required=True)
    p.add_argument("--calibration", required=True, help="LDCTIQAC-format training folder")
    p.add_argument("--output", required=True)
    p.add_argument("--test-data", default=None,
                   help="held-out folder for the gate (default: the calibration folder's test split)")
    p.add_argument("--calibration-count", type=int, default=128)
    p.add_argument("--method", default="auto",
                   help="auto (compare and pick) or one of minmax|entropy|percentile99.999|"
                        "percentile99.99|percentile99.9, with -symmetric|-asymmetric, optionally +conv1-float")
    p.add_argument("--compare", action="store_true",
                   help="with a fixed method, still measure the other calibrations")
    p.add_argument("--weights", choices=("s7", "s8", "u8"), default="s7",
                   help="weight format: s7 = 7-bit int8 weights, cannot saturate the int16 pair sums "
                        "of CPUs without VNNI (default); s8 = full-range int8; u8 = uint8")
    p.add_argument("--no-equalize", dest="equalize", action="store_false",
                   help="skip cross-layer range equalization before calibration (for comparison)")
    p.set_defaults(func=_cmd_quantize)

    p = sub.add_parser("all", help="simulate -> train -> export -> quantize -> verify")
    p.add_argument("--out", default="models")
    p.add_argument("--work", default="data/build")
    p.add_argument("--count", type=int, default=12800,
                   help="simulated slices (default 12,800: the shipped models 0.3.0; 0.2.0 had 1,200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--preset", choices=("reference", "original"), default="reference")
    p.add_argument("--time-budget", type=float, default=None)
    p.add_argument("--sim-version", type=int, choices=(1, 2, 3), default=3,
                   help="simulator of the training data: 3 (default: the label independent of anatomy, "
                        "padded fields of view; the shipped models 0.3.0), 2 (textured, multi-region; "
                        "models 0.2.0) or 1 (ellipse abdomens; models 0.1.0)")
    p.add_argument("--finetune-from", default=None, metavar="W",
                   help="fine-tune these weights on the simulated data instead of training from scratch")
    p.add_argument("--workers", type=int, default=None, help="simulation processes (default: one per core)")
    p.add_argument("--steps", type=int, default=None, help="with --finetune-from: crop-phase steps")
    p.add_argument("--patience", type=int, default=None, help="with --finetune-from: early-stopping patience")
    p.add_argument("--eval-every", type=int, default=None, help="with --finetune-from: steps between validations")
    p.add_argument("--max-eval", type=int, default=None,
                   help="score at most this many validation / test slices in the INT8 gates (and, "
                        "with --finetune-from, its validation): fixed random subsets")
    p.add_argument("--quantize-method", default=None,
                   help="INT8 calibration (default auto: compare them all and pick)")
    p.set_defaults(func=_cmd_all)

    p = sub.add_parser("finetune", help="fine-tune weights on a site's labelled slices, export FP32 + INT8")
    p.add_argument("--weights", required=True, help="starting .weights.h5 (e.g. models/deltaiqa.weights.h5)")
    p.add_argument("--data", required=True, nargs="+", metavar="PATH",
                   help="LDCTIQAC-format folder of labelled slices (50-500); with --labels, the image "
                        "files or folders (recursive) the label file names: DICOM, TIFF, .npy, PNG")
    p.add_argument("--labels", default=None, metavar="FILE",
                   help="reference scores as deltaiqa-lite evaluate reads them: LDCTIQAC JSON "
                        "({\"0000.tif\": 2.8} or {\"valid_0.tif\": {\"scores\": [...]}}) or CSV "
                        "file,score / file,frame,score; matched to the images by file name and frame")
    p.add_argument("--image-window", type=hu_window, default=None, metavar="CENTRE,WIDTH",
                   help="with --labels: the HU window plain images (PNG, JPEG, integer TIFF) were "
                        "saved with")
    p.add_argument("--output", required=True, help="folder for the weights, ONNX models and card")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="crop-phase steps (default 600)")
    p.add_argument("--time-budget", type=float, default=None,
                   help="stop at the first evaluation past this many seconds")
    p.add_argument("--patience", type=int, default=6,
                   help="evaluations without a better validation sum before stopping")
    p.add_argument("--eval-every", type=int, default=None, help="steps between validations (default 40)")
    p.add_argument("--batch", type=int, default=None, help="crop batch size (default 16)")
    p.add_argument("--crop", type=int, default=None, help="crop size in pixels (default 256)")
    p.add_argument("--quantize-method", default="auto",
                   help="INT8 calibration: auto (compare the grid) or a fixed one, e.g. "
                        "percentile99.99-asymmetric (see quantize --method)")
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT/work/last.weights.h5")
    p.set_defaults(func=_cmd_finetune)

    p = sub.add_parser("adapt", help="adapt the shipped weights to a site's unlabelled CT (no reader scores)")
    p.add_argument("--data", required=True, nargs="+", metavar="PATH",
                   help="the site's CT: DICOM files or folders (walked recursively), e.g. the QA node's store")
    p.add_argument("--output", required=True, help="folder for the adapted weights, ONNX models and card "
                                                   "(never the starting models' folder)")
    p.add_argument("--models", default="models", help="folder of the starting weights and ONNX models")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--samples-per-slice", type=int, default=24,
                   help="noisy copies per slice, labels spread over 0..4 (default 24)")
    p.add_argument("--steps", type=int, default=None, help="crop-phase steps (default 600)")
    p.add_argument("--time-budget", type=float, default=None,
                   help="stop at the first evaluation past this many seconds")
    p.add_argument("--patience", type=int, default=6, help="evaluations without a better validation sum")
    p.add_argument("--eval-every", type=int, default=None, help="steps between validations (default 40)")
    p.add_argument("--batch", type=int, default=None, help="crop batch size (default 16)")
    p.add_argument("--crop", type=int, default=None, help="crop size in pixels (default 256)")
    p.add_argument("--max-eval", type=int, default=None,
                   help="score at most this many validation / held-out copies during fine-tuning")
    p.add_argument("--quantize-method", default="minmax-asymmetric", help="INT8 calibration (see quantize --method)")
    p.add_argument("--no-real-anatomy", action="store_true", help="skip the real-anatomy check of the result")
    p.set_defaults(func=_cmd_adapt)

    p = sub.add_parser("real-anatomy", help="score real CT slices with inserted noise against the label rule")
    p.add_argument("--models", default="models", help="folder with deltaiqa-fp32.onnx / deltaiqa-int8.onnx")
    p.add_argument("--metrics", default=None,
                   help="metrics.json to add the result to (default: MODELS/metrics.json)")
    p.set_defaults(func=_cmd_real_anatomy)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
