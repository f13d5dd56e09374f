"""Results to people: a Markdown report and a PNG chart of per-slice latency (Pillow only)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

__all__ = ["chart_rows", "draw_chart", "markdown"]


def _f(value, digits: int = 1, suffix: str = "") -> str:
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}{suffix}"


def _why(section: dict) -> str | None:
    if "skipped" in section:
        return f"skipped: {section['skipped']}"
    if "error" in section:
        return f"failed: {section['error']}"
    return None


def _agreement_line(agreement: dict) -> str:
    """INT8 vs FP32 on the examples on this CPU, next to the machine's facts."""
    if "mean_abs_difference" not in agreement:
        return f"INT8 vs FP32 on the examples: {_why(agreement) or 'not measured'}"
    return (f"INT8 vs FP32 on the {agreement['slices']} examples: mean |score difference| "
            f"{agreement['mean_abs_difference']:.4f}, worst {agreement['max_abs_difference']:.4f}, rounded "
            f"agreement {agreement['rounded_score_agreement']:.2f} "
            f"({'within' if agreement['within_bar'] else 'OUTSIDE'} {agreement['bar']}); INT8 model "
            f"saturation-safe: {agreement['int8_saturation_safe']}")


def markdown(results: dict) -> str:
    """The run as a Markdown document: headline targets first, then every table."""
    machine = results.get("machine", {})
    lines = [f"# deltaiqa-lite benchmarks ({results['mode']} run)", "",
             f"- date: {results['date_utc']}; suite wall time {results.get('wall_s', 'n/a')} s",
             f"- machine: {machine.get('cpu_model')}, {machine.get('usable_cpus')} usable CPUs, "
             f"{machine.get('memory_gib')} GiB, flags {', '.join(machine.get('cpu_flags', []))}",
             f"- INT8 kernel here: {machine.get('int8_kernel', 'n/a')}; " + _agreement_line(results.get("agreement", {})),
             f"- load average at start {machine.get('load_average_at_start')}",
             f"- models: {results['config']['models_source']} ({', '.join(results['config']['models'].values())})",
             f"- Keras weights: {results['config'].get('weights')} "
             f"({results.get('keras', {}).get('weights_note', 'n/a')})",
             "- sha256: " + ", ".join(f"{k} {str(v)[:12]}" for k, v in results["config"].get("sha256", {}).items()),
             f"- GPU: {results['gpu']}", ""]
    packages = machine.get("packages", {})
    if packages:
        lines += ["- versions: " + ", ".join(f"{k} {v}" for k, v in packages.items() if v), ""]

    lines += ["## Targets (issue 4), ratios within this run", "", "| target | wanted | measured | met |",
              "|---|---|---|---|"]
    for row in results.get("targets", []):
        met = {True: "yes", False: "**no**", None: "not measured"}[row["met"]]
        lines.append(f"| {row['what']} | {row['target']} | {_f(row['value'], 2)} | {met} |")
    extra = results.get("ratios", {})
    lines += ["", "Other ratios: " + ", ".join(f"{k} {_f(v, 2)}" for k, v in extra.items()
                                                if k not in {t['key'] for t in results.get('targets', [])}), ""]

    lines += ["## Inference (per slice, ms; throughput in slices/s)", ""]
    rows = []
    for provider_section in ("inference", "openvino"):
        section = results.get(provider_section, {})
        why = _why(section)
        if why:
            lines.append(f"- {provider_section}: {why}")
            continue
        rows += section.get("runs", [])
    if rows:
        lines += ["| model | provider | threads | batch | p50 | p95 | p99 | slices/s | GMAC/s | calls |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for run in rows:
            per = run["per_slice"]
            lines.append(f"| {run.get('label', run['precision'])} | {run['providers'][0].replace('ExecutionProvider', '')} | "
                         f"{run['threads']} | {run['batch']} | {_f(per['p50_ms'])} | {_f(per['p95_ms'])} | "
                         f"{_f(per['p99_ms'])} | {_f(run['slices_per_s'])} | {_f(run['gmac_per_s'], 0)} | "
                         f"{run['timing']['calls']} |")
    lines.append("")

    keras = results.get("keras", {})
    lines += ["## Keras baseline (build environment)", ""]
    if _why(keras):
        lines.append(f"- {_why(keras)}")
    else:
        latency = keras["latency"]
        lines += [f"TensorFlow {latency['tensorflow']}, Keras {latency['keras']}, "
                  f"{latency['intra_op_threads']} intra-op threads; max |p_keras - p_onnx_fp32| on a probe input "
                  f"{latency['max_abs_diff_vs_onnx_fp32']:.2e}", "",
                  "| mode | batch | p50 | p95 | p99 | slices/s | calls |", "|---|---|---|---|---|---|---|"]
        for run in latency["runs"]:
            per = run["per_slice"]
            lines.append(f"| {run['mode']} | {run['batch']} | {_f(per['p50_ms'])} | {_f(per['p95_ms'])} | "
                         f"{_f(per['p99_ms'])} | {_f(run['slices_per_s'])} | {run['timing']['calls']} |")
    lines.append("")

    lines += ["## Cold start, memory, install size", "", "| | cold start to first output (s) | peak RSS (MB) | "
              "environment (MB) |", "|---|---|---|---|"]
    install, kcold = results.get("install", {}), keras.get("cold_start", {})
    ours = install.get("cold_start", {})
    lines.append(f"| deltaiqa-lite score one.dcm (INT8, runtime-only venv) | {_f(ours.get('first_output_s'), 2)} | "
                 f"{_f(ours.get('peak_rss_mb'), 0)} | {_f(install.get('venv', {}).get('size_mb'), 0)} |")
    environment = keras.get("environment", {})
    lines.append(f"| Keras: import TF + load weights + read + predict | {_f(kcold.get('first_output_s'), 2)} | "
                 f"{_f(kcold.get('peak_rss_mb'), 0)} | {_f(environment.get('size_mb'), 0)} |")
    for name, section in (("install", install), ("keras", keras)):
        if _why(section):
            lines.append(f"\n- {name}: {_why(section)}")
    if environment:
        lines.append(f"\nTensorFlow environment = empty venv ({_f(environment['empty_venv_mb'], 0)} MB) + "
                     f"dependency closure of tensorflow and pydicom ({_f(environment['tensorflow_closure_mb'], 0)} MB, "
                     f"{len(environment['closure'])} packages); the whole build venv is "
                     f"{_f(environment['whole_build_venv_mb'], 0)} MB.")
    if install.get("venv"):
        venv = install["venv"]
        lines.append(f"Runtime venv: wheel {venv['wheel']} ({_f(venv['wheel_mb'], 1)} MB) + "
                     + ", ".join(f"{k} {v}" for k, v in sorted(venv["packages"].items())) + ".")
    lines.append("")

    lines += ["## Preprocessing per slice (one thread: read + decode + HU + window + crop/resize)", ""]
    pre = results.get("preprocess", {})
    if _why(pre):
        lines.append(f"- {_why(pre)}")
    else:
        lines += ["| transfer syntax | kB/file | p50 ms | p95 ms | read+decode p50 | prepare p50 |",
                  "|---|---|---|---|---|---|"]
        for run in pre["runs"]:
            lines.append(f"| {run['syntax']} | {_f(run['mean_file_kb'], 0)} | {_f(run['timing']['p50_ms'])} | "
                         f"{_f(run['timing']['p95_ms'])} | {_f(run['read_ms'])} | {_f(run['prepare_ms'])} |")
        for syntax, reason in pre.get("not_measured", {}).items():
            lines.append(f"\n- {syntax}: not measured, {reason}")
    lines.append("")

    lines += ["## End to end: a series from DICOM files on disk (INT8, CPU)", ""]
    series = results.get("series", {})
    if _why(series):
        lines.append(f"- {_why(series)}")
    else:
        lines += ["| syntax | path | slices | slices/s | pure inference slices/s | ratio | bound (idle cores) "
                  "| of bound | bound at inference's CPU share |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for run in series["runs"]:
            lines.append(f"| {run['syntax']} | {run['api']} | {run['slices']} | {_f(run['series_slices_per_s'])} | "
                         f"{_f(run['inference_slices_per_s'])} | {_f(run['ratio'], 2)} | "
                         f"{_f(run.get('bound_ratio'), 2)} | {_f(run.get('of_bound'), 2)} | "
                         f"{_f(run.get('share_bound_ratio'), 2)} |")
            if run.get("steady_ratio") is not None:
                startup = run.get("startup", {})
                lines.append(f"| {run['syntax']} | CLI steady state (start-up {_f(run.get('one_file_s'), 2)} s: "
                             f"import {_f(startup.get('import_s'), 2)}, model load "
                             f"{_f(startup.get('model_load_s'), 2)}, first call {_f(startup.get('first_call_s'), 2)}) "
                             f"| | {_f(run.get('steady_slices_per_s'))} | {_f(run['inference_slices_per_s'])} | "
                             f"{_f(run['steady_ratio'], 2)} | | | |")
        stage_rows = [run for run in series["runs"] if run.get("stages")]
        if stage_rows:
            lines += ["", "CPU milliseconds per slice outside inference (one thread each), inference CPU per slice, "
                      "and the bound they give (`series_bound`):", "",
                      "| syntax | read | decode | preprocess | physics | output | total | inference CPU | CPUs |",
                      "|---|---|---|---|---|---|---|---|---|"]
            for run in stage_rows:
                st = run["stages"]
                lines.append(f"| {run['syntax']} | {_f(st['read_ms'])} | {_f(st['decode_ms'])} | "
                             f"{_f(st['preprocess_ms'])} | {_f(st['physics_ms'])} | {_f(st['output_ms'])} | "
                             f"{_f(st['total_ms'])} | {_f(run.get('inference_cpu_ms'))} | {run.get('cpus')} |")
        what_if = series.get("what_if", [])
        if what_if:
            lines += ["", "What-if diagnostics (same uncompressed series, one setting changed; not the "
                      "runtime's defaults):", "", "| variant | slices/s | pure inference slices/s | ratio |",
                      "|---|---|---|---|"]
            for run in what_if:
                lines.append(f"| {run['variant']} | {_f(run['series_slices_per_s'])} | "
                             f"{_f(run['inference_slices_per_s'])} | {_f(run['ratio'], 2)} |")
    lines.append("")

    lines += ["## Compute efficiency", ""]
    ceiling = results.get("ceiling", {})
    if _why(ceiling):
        lines.append(f"- {_why(ceiling)}")
    else:
        lines += ["| GEMM | size (m x k x n) | threads | GMAC/s |", "|---|---|---|---|"]
        for run in ceiling["runs"]:
            lines.append(f"| {run['kind']} | {run['m']} x {run['k']} x {run['n']} | {run['threads']} | "
                         f"{_f(run['gmac_per_s'], 0)} |")
    openvino_ceiling = results.get("openvino", {}).get("ceiling", {}).get("runs", [])
    if openvino_ceiling:
        lines += ["", "Same GEMM files under the OpenVINO EP (its own kernels):", "",
                  "| GEMM | size | threads | GMAC/s |", "|---|---|---|---|"]
        for run in openvino_ceiling:
            figure = _f(run.get("gmac_per_s"), 0) if "error" not in run else f"not run: {run['error'][:120]}"
            lines.append(f"| {run['kind']} | {run['size']} | {run['threads']} | {figure} |")
    profile = results.get("profile", {})
    if profile and not _why(profile):
        lines += ["", "Where the time goes (onnxruntime profiler, all cores):", ""]
        for precision, data in profile.items():
            if not isinstance(data, dict) or "by_op_ms" not in data:
                continue
            total = data["node_ms"] or 1.0
            shares = ", ".join(f"{op} {ms / total:.0%}" for op, ms in list(data["by_op_ms"].items())[:6])
            lines.append(f"- {precision}, batch {data['batch']}: {data['run_ms']:.1f} ms per call; {shares}")
            layers = conv_layer_rates(data)
            if layers:
                lines.append("  - conv kernels alone (profiler time, GMAC/s): "
                             + ", ".join(f"{name} {rate:.0f}" for name, rate in layers.items()))
    lines.append("")
    contention = {name: section.get("other_cpu_s") for name, section in results.items()
                  if isinstance(section, dict) and section.get("other_cpu_s") is not None}
    if contention:
        lines += ["## Other work on the machine during each section", "",
                  "CPU seconds used by other processes while the section ran (/proc/stat minus this suite), "
                  "against the section's wall time; over 10 % of one CPU marks the section CONTENDED "
                  "(its timings are slower than this machine can do):", ""]
        for name, value in contention.items():
            wall = results[name]["section_s"] or 0.0
            flag = " CONTENDED" if wall and value / wall > 0.10 else ""
            lines.append(f"- {name}: {value:.1f} s in {wall:.0f} s{flag}")
        lines.append("")
    notes = results.get("notes", [])
    if notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in notes] + [""]
    return "\n".join(lines)


# Multiply-accumulates per slice of each convolution of Delta-IQA (DESIGN.md section 1).
CONV_MACS = {"conv1": 126 * 126 * 96 * 11 * 11 * 1, "conv2": 62 * 62 * 256 * 5 * 5 * 96,
             "conv3": 30 * 30 * 384 * 3 * 3 * 256, "conv4": 30 * 30 * 384 * 3 * 3 * 384,
             "conv5": 30 * 30 * 256 * 3 * 3 * 384}


def conv_layer_rates(profile: dict) -> dict[str, float]:
    """GMAC/s of each conv node in a profile (node names start with the Keras layer name, e.g. conv2_1/...)."""
    rates = {}
    for node in profile.get("top_nodes_ms", []):
        layer = node["node"].split("_")[0]
        if layer in CONV_MACS and node["op"] in ("Conv", "QLinearConv") and layer not in rates and node["ms"] > 0:
            rates[layer] = CONV_MACS[layer] * profile["batch"] / 1e9 / (node["ms"] / 1e3)
    return dict(sorted(rates.items()))


def chart_rows(results: dict) -> list[tuple[str, float, float, str]]:
    """(label, p50 ms/slice, p95 ms/slice, group) for every measured configuration."""
    rows = []
    for section in ("inference", "openvino"):
        for run in results.get(section, {}).get("runs", []):
            provider = run["providers"][0].replace("ExecutionProvider", "")
            rows.append((f"{run.get('label', run['precision'])} {provider} t{run['threads']} b{run['batch']}",
                         run["per_slice"]["p50_ms"], run["per_slice"]["p95_ms"], f"{run['precision']}"))
    for run in results.get("keras", {}).get("latency", {}).get("runs", []):
        rows.append((f"keras {run['mode']} b{run['batch']}", run["per_slice"]["p50_ms"], run["per_slice"]["p95_ms"],
                     "keras"))
    return rows


COLOURS = {"int8": (46, 125, 50), "fp32": (21, 101, 192), "keras": (198, 40, 40)}


def draw_chart(results: dict, path: Path) -> None:
    """Horizontal bars of p50 per-slice latency (ms) with a p95 tick, one row per configuration."""
    rows = chart_rows(results)
    font = ImageFont.load_default(size=14)
    small = ImageFont.load_default(size=12)
    row_h, left, right, top = 22, 250, 110, 60
    width = 1100
    height = top + row_h * max(1, len(rows)) + 50
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    machine = results.get("machine", {})
    draw.text((10, 8), f"deltaiqa-lite: per-slice latency, p50 bar, p95 tick (ms, lower is better) - "
                       f"{results['date_utc']}", fill="black", font=font)
    draw.text((10, 30), f"{machine.get('cpu_model')}, {machine.get('usable_cpus')} CPUs; models: "
                        f"{results['config']['models_source']}; t = threads, b = batch", fill=(80, 80, 80), font=small)
    if not rows:
        draw.text((10, top), "no latency measured", fill="black", font=font)
        image.save(path)
        return
    longest = max(max(p50, p95) for _, p50, p95, _ in rows)
    scale = (width - left - right) / longest
    for index, (label, p50, p95, group) in enumerate(rows):
        y = top + index * row_h
        draw.text((10, y + 3), label, fill="black", font=small)
        draw.rectangle([left, y + 3, left + max(1, int(p50 * scale)), y + row_h - 3], fill=COLOURS[group])
        x95 = left + int(p95 * scale)
        draw.line([x95, y + 1, x95, y + row_h - 1], fill="black", width=2)
        draw.text((max(x95, left + int(p50 * scale)) + 6, y + 3), f"{p50:.1f}", fill="black", font=small)
    axis_y = top + len(rows) * row_h + 5
    draw.line([left, axis_y, width - right, axis_y], fill="black")
    for fraction in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = left + int(fraction * (width - left - right))
        draw.line([x, axis_y, x, axis_y + 5], fill="black")
        draw.text((x - 10, axis_y + 8), f"{fraction * longest:.0f}", fill="black", font=small)
    draw.text((width - right + 30, axis_y + 8), "ms/slice", fill="black", font=small)
    legend_x = width - 330
    for name, colour in COLOURS.items():
        draw.rectangle([legend_x, 32, legend_x + 12, 44], fill=colour)
        draw.text((legend_x + 16, 30), {"int8": "INT8 ONNX", "fp32": "FP32 ONNX", "keras": "Keras"}[name],
                  fill="black", font=small)
        legend_x += 105
    image.save(path)
