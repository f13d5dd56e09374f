"""Render the shipped models' cards as ``models/MODEL_CARD.md`` for people."""

from __future__ import annotations


def _metrics_row(name: str, m: dict | None) -> str:
    if not m:
        return f"| {name} | - | - | - | - | - | - | - |"
    return (f"| {name} | {m['n']} | {m['plcc']:.3f} | {m['srocc']:.3f} | {m['krocc']:.3f} | "
            f"{m['sum']:.3f} | {m['accuracy']:.3f} | {m['mae']:.3f} |")


def _real_anatomy_lines(real: dict | None) -> list[str]:
    if not real:
        return ["- real-anatomy check: not run for these models (`python -m convert real-anatomy`)"]
    target = real.get("target", {})
    lines = [f"- method: {real.get('method')}; inserted SD {real.get('levels_hu')} HU; these slices "
             "never enter training", "",
             "| models | slices (scored) | mean abs(score - rule) | worst | worst case | per-slice Spearman rho |",
             "|---|---|---|---|---|---|"]
    for scope, key in (("in scope", "summary"), ("outside scope", "outside_scope")):
        for model, r in (real.get(key) or {}).items():
            w = r["worst"]
            lines.append(f"| {model} {scope} | {r['slices']} ({r['scored']}) | {r['mean_abs_diff']} | "
                         f"{r['max_abs_diff']} | {w['part']} +{w['inserted_sd_hu']:g} HU: score "
                         f"{w['score']} vs rule {w['rule_score']} | "
                         f"{r['spearman_rho_score_vs_noise_per_slice']} |")
    lines += ["", f"Target (issue 14): mean <= {target.get('mean_abs_diff')}, worst <= "
                  f"{target.get('max_abs_diff')} (in scope)."]
    return lines + _real_anatomy_v2_lines(real.get("v2"))


def _balance_lines(balance: dict | None) -> list[str]:
    """Per-region Likert class shares and Spearman(label, Dw) of a simulator v3 data set."""
    if not balance:
        return []
    lines = ["", "| region | slices | class shares 0 / 1 / 2 / 3 / 4 | Spearman(label, Dw) | label mean |",
             "|---|---|---|---|---|"]
    for region, entry in balance.items():
        shares = " / ".join(f"{entry['class_share'][str(c)]:.3f}" for c in range(5))
        lines.append(f"| {region} | {entry['slices']} | {shares} | {entry['spearman_label_dw']} | "
                     f"{entry['label_mean']} |")
    return lines


def _by_region_lines(by_region: dict | None) -> list[str]:
    """Per-region agreement on the held-out simulated test split (``test_by_region``)."""
    if not by_region:
        return []
    lines = ["", "Per body region on the held-out test split (FP32; a shortcut from anatomy to label "
             "shows as a signed error of one sign in one region):", "",
             "| region | n | mean abs(score - label) | worst | mean signed | PLCC+SROCC+KROCC |",
             "|---|---|---|---|---|---|"]
    for region, e in by_region.items():
        lines.append(f"| {region} | {e['n']} | {e['mean_abs_diff']} | {e['worst_abs_diff']} | "
                     f"{e['mean_signed_diff']} | {e.get('sum', '-')} |")
    return lines


def _real_anatomy_v2_lines(v2: dict | None) -> list[str]:
    if not v2:
        return []
    target = v2.get("target", {})
    lines = ["", f"Version 2 (per region; textures {list(v2.get('textures', {}))}; gates mean <= "
                 f"{target.get('mean_abs_diff')}, worst <= {target.get('max_abs_diff')}, probe slope "
                 f"{v2.get('probe_slope')}):", "",
             "| region | model | slices (scored) | mean abs(score - rule) | worst | passed |",
             "|---|---|---|---|---|---|"]
    for region, models in v2.get("regions", {}).items():
        for model, e in models.items():
            lines.append(f"| {region} | {model} | {e['slices']} ({e['scored']}) | {e['mean_abs_diff']} | "
                         f"{e['max_abs_diff']} | {e['passed']} |")
    for model, rows in v2.get("probe", {}).items():
        slopes = [r["slope"] for r in rows]
        lines.append(f"- shortcut probe {model}: slopes {min(slopes):.3f}-{max(slopes):.3f} over "
                     f"{len(rows)} slice x texture pairs, passed {all(r['passed'] for r in rows)}")
    lines.append(f"- regions without a public slice (unchecked): {v2.get('regions_without_slices')}; "
                 f"all gates passed: {(v2.get('gates') or {}).get('passed')}")
    return lines


def _saturation_line(q: dict) -> str:
    """Whether the INT8 model can saturate the int16 pair sums of x86 CPUs without VNNI."""
    saturation = q.get("saturation") or {}
    if "saturation_safe" not in q:
        return ("- saturation-safe on x86 CPUs without VNNI: not declared (built before the check; "
                "int16 pair sums may saturate there)")
    return (f"- saturation-safe on x86 CPUs without VNNI: **{q['saturation_safe']}** "
            f"({saturation.get('scheme', '-')}): {saturation.get('reason', '-')}")


def _without_vnni_line(q: dict) -> str:
    emulated = (q.get("saturation") or {}).get("held_out_gate_without_vnni")
    if not emulated:
        return "- held-out gate without VNNI: not run"
    return (f"- held-out gate without VNNI (exact NumPy emulation of the saturating u8s8 kernels, "
            f"convert/quant/saturation.py): mean |score diff| {emulated['mean_abs_score_diff']}, max "
            f"{emulated['max_abs_score_diff']}, class agreement {emulated['class_agreement']}, "
            f"passed: {emulated['passed']}")


def _float_layers_line(q: dict) -> str:
    layers = q.get("float_layers") or "softmax"
    return (f"- kept in float: {layers}. The head is under 0.1 % of the multiply-adds; with its "
            "output (the logits) quantized, near-tie argmaxes flipped (docs/int8.md)"
            + (". A float conv1 avoids INT8 steps of 5.5 HU on the input" if "conv1" in layers else ""))


def _equalization_line(q: dict) -> str:
    eq = q.get("equalization")
    if not eq:
        return "- cross-layer range equalization: not applied"
    pairs = ", ".join(f"{p['first'].split('/')[0]} -> {p['second'].split('/')[0]} (channel range "
                      f"spread {p['range_spread_before']} -> {p['range_spread_after']})"
                      for p in eq.get("pairs", []))
    return (f"- {eq.get('method')}: {pairs}; the equalized graph gives the FP32 scores within "
            f"{eq.get('fp32_parity_max_abs_score_diff')}")


def _symmetric_line(q: dict) -> str:
    comparison = q.get("comparison_on_validation") or {}
    passing = [n for n, r in comparison.items() if "-symmetric" in n and r.get("passed")]
    if q.get("tensorrt_compatible"):
        return "- the shipped calibration has symmetric INT8 activations, which TensorRT accepts"
    if not passing:
        return ("- no calibration with symmetric activations (TensorRT's INT8) passes the gate on "
                "validation; on TensorRT run the FP32 model, which the runtime builds as FP16")
    return (f"- {len(passing)} calibration(s) with symmetric activations pass on validation but rank "
            "lower; on TensorRT run the FP32 model (FP16) or re-quantize with one of them")


def render(fp32: dict, int8: dict, files: dict[str, str], real_anatomy: dict | None = None,
           by_region: dict | None = None) -> str:
    training = fp32.get("training", {})
    data = training.get("data", {})
    settings = data.get("settings", {})
    q = int8.get("quantization") or {}
    gate = q.get("held_out_gate", {})
    lines = [
        "# Delta-IQA model card (deltaiqa-lite reference weights)",
        "",
        f"Architecture {fp32['architecture']} v{fp32['architecture_version']}, "
        f"{fp32['parameters']:,} parameters, model version {fp32['version']}.",
        "",
        "## Intended use",
        "",
        fp32["intended_use"],
        "",
        "**These weights were trained on simulated CT, not on radiologist scores.** The labels are a",
        "documented function of measured noise and streaks (below). They rank dose and sampling",
        "degradation; they are not the judgement of a reader. Validate locally before any use",
        "(`deltaiqa-lite evaluate`), or convert weights trained on LDCTIQAC data with",
        "`python -m convert export`.",
        "",
        "## Input and output",
        "",
        f"- input `image`: {fp32['inputs']['image']}",
        f"- output `probabilities`: {fp32['outputs']['probabilities']}",
        f"- output `conv5`: {fp32['outputs']['conv5']}",
        f"- score: {fp32['score']}",
        "- classes: " + ", ".join(f"{k} {label} ({meaning})" for k, (label, meaning) in
                                   enumerate(zip(fp32["class_labels"], fp32["class_meanings"]))),
        f"- preprocessing: {fp32['preprocessing']}",
        "",
        "## Trained on",
        "",
    ]
    if training.get("finetuned_from"):
        before = training.get("before") or {}
        lines += [
            f"- **fine-tuned** from `{training['finetuned_from']['weights']}` (sha256 "
            f"`{training['finetuned_from']['sha256'][:16]}...`) with `python -m convert finetune`: "
            "these are the starting weights fine-tuned on the data below, not a training from scratch",
            f"- site data: {training.get('site_data')}",
            f"- before fine-tuning, on the same splits: validation {before.get('validation')}, "
            f"held-out test {before.get('test')}",
        ]
    if fp32.get("adaptation"):
        lines.append(f"- **adapted** to a site's unlabelled CT with `python -m convert adapt`: "
                     f"{fp32['adaptation']}")
    lines += [
        f"- {data.get('kind', 'unknown')}",
        f"- {data.get('count', '?')} slices (seed {data.get('seed', '?')}), label mean "
        f"{data.get('label_mean', '?')}, SD {data.get('label_sd', '?')}, "
        f"{data.get('label_levels', '?')} of 21 levels present",
        f"- acquisition: {settings.get('geometry', '?')}, full-dose N0 "
        f"{settings.get('n0_full_dose', '?')} photons per bin and view, dose fractions "
        f"{settings.get('dose_range', '?')} (log-uniform), views {settings.get('views', '?')}, "
        f"FBP kernel {settings.get('kernel', '?')}",
        f"- label: D = sqrt(noise_sd^2 + (w * streak_rms)^2), w = {settings.get('streak_weight')}; "
        f"score = 4 * (1 - ln(D / {settings.get('label_d_best_hu')}) / "
        f"ln({settings.get('label_d_worst_hu')} / {settings.get('label_d_best_hu')})), clipped to "
        "0..4, rounded to 0.2",
        f"- splits (disjoint by {training.get('splits', {}).get('disjoint_by', '?')}): "
        f"{training.get('splits')}",
        f"- training preset: {(training.get('settings') or {}).get('description', training.get('settings'))}",
        "",
        f"- regions {data.get('regions', '-')}, kernels {data.get('kernels', '-')}, "
        f"{data.get('truncated', '-')} slices with the body cut by the field's edge; simulated at "
        f"{data.get('slices_per_minute', '-')} slices/min ({data.get('workers', '-')} workers)",
        *_balance_lines(data.get("label_balance")),
        "",
        "## Checked on",
        "",
        "Held-out simulated slices (phantoms never seen in training):",
        "",
        "| split (model) | n | PLCC | SROCC | KROCC | sum | accuracy | MAE |",
        "|---|---|---|---|---|---|---|---|",
        _metrics_row("validation (FP32)", (fp32.get("metrics") or {}).get("validation")),
        _metrics_row("held-out test (FP32)", (fp32.get("metrics") or {}).get("held_out_test")),
        _metrics_row("held-out test (FP32, gate run)", gate.get("fp32")),
        _metrics_row("held-out test (INT8)", gate.get("int8")),
        *_by_region_lines(by_region),
        "",
        "Accuracy is the rounded score against the rounded label. For scale: the LDCTIQAC 2023",
        "winner reached a sum of 2.74 on real, radiologist-scored data; a figure on simulated",
        "data is not comparable to it.",
        "",
        "Real anatomy (`convert/checks/real_anatomy.py`): real CT slices from public DICOM test data with",
        "FBP-like noise inserted at known levels, score against the label rule on the measured noise:",
        "",
        *_real_anatomy_lines(real_anatomy),
        "",
        "## Known to be off",
        "",
        "- labels are the simulator's rule (noise SD and streak RMS), not readers: texture, contrast,",
        "  artefacts other than noise and view aliasing (metal, beam hardening, motion) do not move",
        "  the label, and kernels are judged by their noise SD alone (a sharp lung kernel scores",
        "  lower than readers who expect its grain would score it);",
        "- real anatomy: see the worst cases in the table above; fields far smaller than 250 mm",
        "  (zoomed reconstructions, 128x128 crops) and processed (non-reconstructed) images are",
        "  outside what the simulator draws;",
        "- never trained on iterative or deep-learning reconstructions, dual-energy, paediatric",
        "  protocols or photon-counting CT; validate locally (`deltaiqa-lite evaluate`) and",
        "  fine-tune on local reader scores (`python -m convert finetune`) before relying on levels.",
        "",
        "## Quantization (deltaiqa-int8.onnx)",
        "",
        f"- {q.get('format', '-')}; {q.get('tool', '-')}",
        f"- calibration: **{q.get('calibration', '-')}** on {q.get('calibration_slices', '-')} "
        f"slices from the {q.get('calibration_source', '-')}",
        f"- TensorRT compatible (symmetric activations): {q.get('tensorrt_compatible')}",
        _saturation_line(q),
        f"- selection: {q.get('selection', '-')}",
        f"- held-out gate {q.get('gate')}: mean |score diff| {gate.get('mean_abs_score_diff')}, "
        f"class agreement {gate.get('class_agreement')}, sum drop {gate.get('sum_drop')}, "
        f"passed: {gate.get('passed')}",
        _without_vnni_line(q),
        "- held-out attempts, in validation rank order: " + "; ".join(
            f"{a['variant']}: mean {a['mean_abs_score_diff']}, max {a['max_abs_score_diff']}, "
            f"class agreement {a['class_agreement']}, "
            + ("passed" if a["passed"] else "failed (" + ", ".join(a["failures"]) + ")")
            for a in q.get("held_out_attempts", [])),
        "- class agreement is fragile: two-hot training spreads probability over neighbouring",
        f"  classes; {q.get('held_out_near_ties', {}).get('count', '?')} of the "
        f"{q.get('held_out_near_ties', {}).get('of', '?')} held-out slices have their top two "
        f"probabilities within {q.get('held_out_near_ties', {}).get('gap', '?')} of each other,",
        "  where tiny score shifts flip the argmax.",
        _float_layers_line(q),
        _equalization_line(q),
        _symmetric_line(q),
        "",
        "| calibration (validation split) | mean abs score diff | max abs score diff | class agreement | sum drop | CPU ms/slice |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in (q.get("comparison_on_validation") or {}).items():
        lines.append(f"| {name} | {r['mean_abs_score_diff']:.4f} | {r['max_abs_score_diff']:.4f} | "
                     f"{r['class_agreement']:.3f} | {r['sum_drop']:+.4f} | "
                     f"{r['cpu_latency_ms_batch1']} |")
    lines += [
        f"| FP32 reference | - | - | - | - | {q.get('fp32_cpu_latency_ms_batch1', '-')} |",
        "",
        "CPU latencies here are single measurements made while quantizing; `benchmarks/` has "
        "the proper figures.",
        "",
        "## Provenance",
        "",
        f"- source Keras weights: `{fp32['source_weights']}` sha256 `{fp32['source_weights_sha256']}`",
        f"- Keras/ONNX parity: {fp32.get('verification', {}).get('keras_parity')}",
        f"- tools: {fp32['tools']}",
        "",
        "| file | sha256 |",
        "|---|---|",
    ]
    lines += [f"| `{name}` | `{digest}` |" for name, digest in files.items()]
    lines.append("")
    return "\n".join(lines)
