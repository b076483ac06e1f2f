#!/usr/bin/env python3
"""Flint vs CTranslate2 vs transformers on FLAN-T5 shapes, side by side, in one run.

  Tools/.venv-hf/bin/python Tools/bench/run_peers.py [--shapes small,base] [--threads 2] [--new-tokens 64]
      [--prompt-tokens 64] [--encoder-tokens 512] [--runs 3] [--rounds 1] [--flint .build/release/flint]
      [--skip-convert] [--engines ...] [--json]

Steps (see Tools/bench/README.md for what each number means):
 1. random-weight checkpoints with the real FLAN-T5 configs (Tools/make_bench_checkpoint.py, seed 0) in
    Tools/bench/out/<shape>/, unless present;
 2. conversions, redone when missing or older than their inputs (never with --skip-convert):
    `flint convert DIR -o <shape>-int8.flint --quant int8` / `--quant f32`, and
    `ct2-transformers-converter --model DIR --quantization int8|float32`;
 3. every engine measured in its own process (peak RSS is per engine, from wait4's ru_maxrss), the same workload:
    batch 1, greedy, the same thread count, a --prompt-tokens input decoded for exactly --new-tokens tokens
    (end token suppressed until then), and an --encoder-tokens input for the encoder; one warm-up, then the
    median of --runs runs;
 4. a table on stdout, Tools/bench/out/peers.{md,svg,json} (and the JSON on stdout with --json).
Flint rows are skipped, with a message, when the flint binary is missing; numbers are never invented.
"""
import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent.parent
OUT = BENCH_DIR / "out"
MAKE_CHECKPOINT = REPO / "Tools" / "make_bench_checkpoint.py"
SHAPES = {"small": "flan-t5-small", "base": "flan-t5-base", "large": "flan-t5-large"}
EOS_ID = 1
BASELINE = "ct2-int8"  # the row every ratio is taken against
ENGINE_ORDER = ["flint-int8-wo", "flint-int8-w8a8", "flint-f32", "ct2-int8", "ct2-f32", "hf-f32"]
ENGINE_LABEL = {
    "flint-int8-wo": "Flint int8 (weight-only)",
    "flint-int8-w8a8": "Flint int8 (w8a8)",
    "flint-f32": "Flint f32",
    "ct2-int8": "CTranslate2 int8",
    "ct2-f32": "CTranslate2 float32",
    "hf-f32": "transformers float32",
}
WORKER_TIMEOUT_S = 900


def prompt_ids(length):
    """The input `flint bench` feeds its model (BenchCommand.swift): ids spread over the ordinary T5 vocabulary
    (3…31999) by a fixed formula, ending in </s>. The peers get the very same ids so the workloads are identical."""
    ordinary = 32000 - 3
    return [3 + (i * 7919 + 13) % ordinary for i in range(length - 1)] + [EOS_ID]


def vm_hwm_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def vm_rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


# ----------------------------------------------------------------------------------------------------------------
# Workers: each runs in its own process and prints one JSON object as its last stdout line.

def summarize(runs):
    """Median and spread of the measured runs of one worker."""
    def stat(key):
        xs = [r[key] for r in runs]
        return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "runs": xs}
    return {key: stat(key) for key in runs[0]}


def worker_ct2(args):
    import ctranslate2
    baseline_rss = vm_rss_mb()
    t0 = time.perf_counter()
    translator = ctranslate2.Translator(args.model, device="cpu", compute_type=args.compute_type,
                                        intra_threads=args.threads, inter_threads=1)
    load_ms = (time.perf_counter() - t0) * 1000
    vocab_path = Path(args.model) / "shared_vocabulary.json"
    vocab = json.loads(vocab_path.read_text())
    to_tokens = lambda ids: [vocab[i] for i in ids]  # noqa: E731

    def generate(ids, n):
        stamps = []

        def on_step(step):
            stamps.append(time.perf_counter())
            return False

        start = time.perf_counter()
        # min = max length: the end token is masked until step n (checked: with end_token set to a token greedy
        # decoding emits at step 5, the run still makes 64 steps), so every run decodes exactly n tokens.
        result = translator.translate_batch([to_tokens(ids)], beam_size=1, min_decoding_length=n,
                                            max_decoding_length=n, return_end_token=True, callback=on_step)
        end = time.perf_counter()
        produced = len(result[0].hypotheses[0])
        if len(stamps) != n or produced != n:
            raise SystemExit(f"CTranslate2 made {len(stamps)} steps / {produced} tokens, expected exactly {n}")
        return start, stamps, end

    decode_runs, prefill_runs = [], []
    prompt, long_input = prompt_ids(args.prompt_tokens), prompt_ids(args.encoder_tokens)
    for run in range(args.runs + 1):
        start, stamps, _ = generate(prompt, args.new_tokens)
        if run > 0:  # run 0 is the warm-up
            decode_runs.append({
                "time_to_first_token_ms": (stamps[0] - start) * 1000,
                "decode_tokens_per_second": (args.new_tokens - 1) / (stamps[-1] - stamps[0]),
            })
    for run in range(args.runs + 1):
        # CTranslate2's Translator has no encoder-only call: one decoding step on the long input is the closest
        # (encoder + cross-attention keys/values + one decoder step); the same quantity is measured for all rows.
        start, stamps, end = generate(long_input, 1)
        if run > 0:
            prefill_runs.append({"prefill_tokens_per_second": args.encoder_tokens / (end - start)})
    return {"load_ms": load_ms, "baseline_rss_mb": baseline_rss, "self_peak_rss_mb": vm_hwm_mb(),
            **summarize(decode_runs), **summarize(prefill_runs), "encoder_is_prefill": True,
            "versions": {"ctranslate2": ctranslate2.__version__},
            "compute_type": translator.compute_type}


def worker_hf(args):
    import torch
    import transformers
    from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList, T5ForConditionalGeneration
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    baseline_rss = vm_rss_mb()
    t0 = time.perf_counter()
    model = T5ForConditionalGeneration.from_pretrained(args.model, torch_dtype=torch.float32).eval()
    load_ms = (time.perf_counter() - t0) * 1000

    class StepClock(LogitsProcessor):
        """Called once per generated token, right after that step's forward pass."""
        def __init__(self):
            self.stamps = []

        def __call__(self, input_ids, scores):
            self.stamps.append(time.perf_counter())
            return scores

    def generate(ids, n):
        clock = StepClock()
        config = GenerationConfig(do_sample=False, num_beams=1, min_new_tokens=n, max_new_tokens=n, use_cache=True,
                                  decoder_start_token_id=0, eos_token_id=EOS_ID, pad_token_id=0)
        input_ids = torch.tensor([ids])
        with torch.inference_mode():
            start = time.perf_counter()
            out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                 generation_config=config, logits_processor=LogitsProcessorList([clock]))
            end = time.perf_counter()
        produced = out.shape[1] - 1  # minus the decoder start token
        if len(clock.stamps) != n or produced != n:
            raise SystemExit(f"transformers made {len(clock.stamps)} steps / {produced} tokens, expected exactly {n}")
        return start, clock.stamps, end

    decode_runs, long_runs = [], []
    prompt, long_input = prompt_ids(args.prompt_tokens), prompt_ids(args.encoder_tokens)
    for run in range(args.runs + 1):
        start, stamps, _ = generate(prompt, args.new_tokens)
        if run > 0:
            decode_runs.append({
                "time_to_first_token_ms": (stamps[0] - start) * 1000,
                "decode_tokens_per_second": (args.new_tokens - 1) / (stamps[-1] - stamps[0]),
            })
    long_tensor = torch.tensor([long_input])
    for run in range(args.runs + 1):
        with torch.inference_mode():
            start = time.perf_counter()
            model.encoder(input_ids=long_tensor, attention_mask=torch.ones_like(long_tensor))
            encoded = time.perf_counter()
        start_p, _, end_p = generate(long_input, 1)
        if run > 0:
            long_runs.append({"encoder_tokens_per_second": args.encoder_tokens / (encoded - start),
                              "prefill_tokens_per_second": args.encoder_tokens / (end_p - start_p)})
    return {"load_ms": load_ms, "baseline_rss_mb": baseline_rss, "self_peak_rss_mb": vm_hwm_mb(),
            **summarize(decode_runs), **summarize(long_runs), "encoder_is_prefill": False,
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__}}


def worker_main(argv):
    parser = argparse.ArgumentParser(prog="run_peers.py _worker")
    parser.add_argument("engine", choices=["ct2", "hf"])
    parser.add_argument("--model", required=True)
    parser.add_argument("--compute-type", default="default")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--prompt-tokens", type=int, required=True)
    parser.add_argument("--new-tokens", type=int, required=True)
    parser.add_argument("--encoder-tokens", type=int, required=True)
    parser.add_argument("--runs", type=int, required=True)
    args = parser.parse_args(argv)
    result = worker_ct2(args) if args.engine == "ct2" else worker_hf(args)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    # CTranslate2 4.8.5 can abort ("terminate called without an active exception") while tearing its thread pool
    # down at interpreter exit; the result is already written, so leave without running destructors.
    os._exit(0)


# ----------------------------------------------------------------------------------------------------------------
# Driver.

def log(msg):
    print(msg, file=sys.stderr, flush=True)


def cpu_pressure():
    """(avg10 %, cumulative µs) of /proc/pressure/cpu "some": time in which at least one runnable task waited for
    a CPU. With only our threads on the machine it stays near 0; other engineers' builds push it up."""
    try:
        with open("/proc/pressure/cpu") as f:
            for line in f:
                if line.startswith("some"):
                    fields = dict(kv.split("=") for kv in line.split()[1:])
                    return float(fields["avg10"]), int(fields["total"])
    except (OSError, KeyError, ValueError):
        pass
    return None, None


def wait_for_quiet(limit, timeout):
    """Waits (up to timeout s) until CPU pressure avg10 <= limit %; returns the last avg10 seen."""
    deadline = time.monotonic() + timeout
    avg10, _ = cpu_pressure()
    while avg10 is not None and avg10 > limit and time.monotonic() < deadline:
        time.sleep(2)
        avg10, _ = cpu_pressure()
    return avg10


def run_measured(cmd, env):
    """Runs cmd, returns (returncode, stdout, stderr, peak RSS in MB of that one process from wait4)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        deadline = time.monotonic() + WORKER_TIMEOUT_S
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return proc.returncode, out.read().decode(errors="replace"), err.read().decode(errors="replace"), \
            usage.ru_maxrss / 1024


def last_json_object(text):
    """The last top-level JSON object in a process's stdout (flint prints it pretty-printed over many lines)."""
    decoder, found, pos = json.JSONDecoder(), None, 0
    while (start := text.find("{", pos)) != -1:
        try:
            found, end = decoder.raw_decode(text, start)
            pos = end
        except ValueError:
            pos = start + 1
    if found is None:
        raise ValueError(f"no JSON object in the output: {text.strip()[-500:]!r}")
    return found


def size_mb(path):
    path = Path(path)
    if path.is_dir():
        return sum(f.stat().st_size for f in path.iterdir() if f.is_file()) / 1e6
    return path.stat().st_size / 1e6


def out_of_date(target, inputs):
    target = Path(target)
    if not target.exists():
        return True
    t = target.stat().st_mtime
    return any(Path(i).exists() and Path(i).stat().st_mtime > t for i in inputs)


def ensure_checkpoint(shape):
    folder = OUT / shape
    if (folder / "model.safetensors").exists() and (folder / "config.json").exists():
        return folder
    log(f"[{shape}] writing the random-weight checkpoint (make_bench_checkpoint.py, seed 0)")
    subprocess.run([sys.executable, str(MAKE_CHECKPOINT), "--shape", shape, "--out", str(folder)], check=True)
    return folder


def convert_flint(flint, checkpoint, quant, target, skip):
    inputs = [checkpoint / "model.safetensors", checkpoint / "config.json", flint]
    if skip or not out_of_date(target, inputs):
        return target if target.exists() else None
    log(f"[{checkpoint.name}] flint convert --quant {quant} -> {target.name}")
    t0 = time.perf_counter()
    done = subprocess.run([str(flint), "convert", str(checkpoint), "-o", str(target), "--quant", quant],
                          capture_output=True, text=True)
    if done.returncode != 0:
        log(f"  flint convert failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-2000:]}")
        return None
    log(f"  {time.perf_counter() - t0:.1f} s, {size_mb(target):.1f} MB")
    return target


def convert_ct2(checkpoint, quantization, target, skip):
    inputs = [checkpoint / "model.safetensors", checkpoint / "config.json"]
    if skip or not out_of_date(target / "model.bin", inputs):
        return target if (target / "model.bin").exists() else None
    converter = Path(sys.executable).parent / "ct2-transformers-converter"
    log(f"[{checkpoint.name}] ct2-transformers-converter --quantization {quantization} -> {target.name}")
    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
    try:
        done = subprocess.run([str(converter), "--model", str(checkpoint), "--output_dir", str(tmp),
                               "--quantization", quantization, "--force"], capture_output=True, text=True)
        if done.returncode != 0:
            log(f"  conversion failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-2000:]}")
            return None
        if target.exists():
            shutil.rmtree(target)
        tmp.replace(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"  {time.perf_counter() - t0:.1f} s, {size_mb(target):.1f} MB")
    return target


def child_env(threads):
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    env["TOKENIZERS_PARALLELISM"] = "false"
    return env


def measure_flint(flint, model, kernels, args):
    """Two `flint bench` processes: the decode workload and the long-input (encoder) workload."""
    common = ["--threads", str(args.threads), "--kernels", kernels, "--runs", str(args.runs), "--json"]
    decode_cmd = [str(flint), "bench", str(model), "--prompt-tokens", str(args.prompt_tokens),
                  "--new-tokens", str(args.new_tokens)] + common
    encoder_cmd = [str(flint), "bench", str(model), "--prompt-tokens", str(args.encoder_tokens),
                   "--new-tokens", "1"] + common
    results, peaks = [], []
    for cmd in (decode_cmd, encoder_cmd):
        code, out, err, peak = run_measured(cmd, child_env(args.threads))
        if code != 0:
            raise RuntimeError(f"`{' '.join(cmd)}` exited {code}: {(err or out).strip()[-2000:]}")
        results.append(last_json_object(out))
        peaks.append(peak)
    dec, enc = results
    one = lambda x: {"median": x, "min": x, "max": x, "runs": [x]}  # noqa: E731  (flint reports the median only)
    return {
        "load_ms": dec["load_ms"],
        "decode_tokens_per_second": one(dec["decode_tokens_per_second"]),
        "time_to_first_token_ms": one(dec["time_to_first_token_ms"]),
        "encoder_tokens_per_second": one(enc["encoder_tokens_per_second"]),
        # one decoding step on the long input: the same quantity the CTranslate2 rows measure
        "prefill_tokens_per_second": one(args.encoder_tokens / (enc["time_to_first_token_ms"] / 1000)),
        "encoder_is_prefill": False,
        "peak_rss_mb": max(peaks),
        "self_peak_rss_mb": max(dec.get("peak_rss_mb", 0), enc.get("peak_rss_mb", 0)),
        "flint_json": {"decode": dec, "encoder": enc},
        "commands": [" ".join(decode_cmd), " ".join(encoder_cmd)],
    }


def measure_worker(engine, model, compute_type, args):
    cmd = [sys.executable, str(Path(__file__).resolve()), "_worker", engine, "--model", str(model),
           "--compute-type", compute_type, "--threads", str(args.threads), "--prompt-tokens", str(args.prompt_tokens),
           "--new-tokens", str(args.new_tokens), "--encoder-tokens", str(args.encoder_tokens), "--runs", str(args.runs)]
    code, out, err, peak = run_measured(cmd, child_env(args.threads))
    if code != 0:
        raise RuntimeError(f"{engine} worker exited {code}: {(err or out).strip()[-2000:]}")
    result = last_json_object(out)
    result["peak_rss_mb"] = peak
    return result


def merge_rounds(rounds):
    """One row from several rounds: medians over every measured run, spread over every run (peers) or every
    round's median (Flint, whose bench reports only its median)."""
    merged = dict(rounds[-1])
    for key in ("decode_tokens_per_second", "time_to_first_token_ms", "encoder_tokens_per_second",
                "prefill_tokens_per_second"):
        if key in rounds[0]:
            xs = [x for r in rounds for x in r[key]["runs"]]
            medians = [r[key]["median"] for r in rounds]
            merged[key] = {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "runs": xs,
                           "round_medians": medians}
    merged["peak_rss_mb"] = max(r["peak_rss_mb"] for r in rounds)
    merged["load_ms"] = statistics.median(r["load_ms"] for r in rounds)
    pressures = [r["cpu_pressure_pct"] for r in rounds if r.get("cpu_pressure_pct") is not None]
    merged["cpu_pressure_pct"] = max(pressures) if pressures else None
    merged["cpu_pressure_pct_rounds"] = pressures
    return merged


def write_atomic(path, text):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def fmt(x, digits=1):
    return "–" if x is None else f"{x:.{digits}f}"


def build_rows(results):
    rows = []
    for shape, engines in results.items():
        base = engines.get(BASELINE)
        for engine in ENGINE_ORDER:
            r = engines.get(engine)
            if r is None:
                continue
            dec = r["decode_tokens_per_second"]
            pre = r["prefill_tokens_per_second"]["median"]
            enc = None if r.get("encoder_is_prefill") else r["encoder_tokens_per_second"]["median"]
            rows.append({
                "shape": shape, "engine": engine, "label": ENGINE_LABEL[engine],
                "encoder_tps": enc, "prefill_tps": pre,
                "decode_tps": dec["median"], "decode_min": dec["min"], "decode_max": dec["max"],
                "ttft_ms": r["time_to_first_token_ms"]["median"],
                "cpu_pressure_pct": r.get("cpu_pressure_pct"),
                "load_ms": r["load_ms"], "peak_rss_mb": r["peak_rss_mb"], "model_mb": r["model_mb"],
                "decode_ratio": dec["median"] / base["decode_tokens_per_second"]["median"] if base else None,
                "encoder_ratio": pre / base["prefill_tokens_per_second"]["median"] if base else None,
            })
    return rows


def markdown(rows, meta):
    lines = [
        f"# Peer benchmark: Flint vs CTranslate2 vs transformers ({meta['date']})",
        "",
        f"Batch 1, greedy, {meta['threads']} threads, {meta['prompt_tokens']}-token input → exactly "
        f"{meta['new_tokens']} new tokens (decode tok/s = tokens after the first / their time); encoder on a "
        f"{meta['encoder_tokens']}-token input. One warm-up, median of {meta['runs']} runs × {meta['rounds']} "
        f"round(s); spread = min–max over runs (Flint: over rounds, its bench reports the median only). "
        f"Random weights, real FLAN-T5 configs. Machine: {meta['machine']}; load average at start "
        f"{meta['loadavg']}. Ratios are to CTranslate2 int8 of the same shape and run.",
        "",
        f"| shape | engine | encoder tok/s @{meta['encoder_tokens']} | prefill tok/s @{meta['encoder_tokens']} "
        f"| decode tok/s @{meta['prompt_tokens']}→{meta['new_tokens']} | decode spread | first token ms "
        f"| load ms | peak RSS MB | model MB | decode × CT2 int8 | encoder × CT2 int8 | CPU pressure % |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['shape']} | {r['label']} | {fmt(r['encoder_tps'], 0)} | {fmt(r['prefill_tps'], 0)} "
            f"| {fmt(r['decode_tps'])} | {fmt(r['decode_min'])}–{fmt(r['decode_max'])} | {fmt(r['ttft_ms'])} "
            f"| {fmt(r['load_ms'], 0)} | {fmt(r['peak_rss_mb'], 0)} | {fmt(r['model_mb'], 1)} "
            f"| {fmt(r['decode_ratio'], 2)} | {fmt(r['encoder_ratio'], 2)} | {fmt(r['cpu_pressure_pct'], 0)} |")
    lines += [
        "",
        "- *encoder tok/s*: encoder only (`flint bench` encoder_tokens_per_second, transformers `model.encoder`). "
        "CTranslate2's Translator has no encoder-only call, so its cell is empty.",
        "- *prefill tok/s*: input tokens / time of a one-token generation on that input (encoder + cross-attention "
        "keys/values + first decoder step; Flint: its time_to_first_token_ms). Measured the same way for every "
        "engine; the *encoder × CT2 int8* ratio uses it.",
        "- *CPU pressure*: share of the row's wall time in which some runnable task waited for a CPU "
        "(/proc/pressure/cpu, worst round). Near 0 means the engine had the cores to itself; tens of % mean other "
        "processes competed and the row's speed is understated (OpenMP/torch thread teams suffer most).",
        "- *peak RSS*: high-water resident memory of the engine's own process(es) (wait4 ru_maxrss), including "
        "the Python interpreter and its imports for the peers.",
    ]
    for note in meta["notes"]:
        lines.append(f"- {note}")
    return "\n".join(lines) + "\n"


def svg_chart(rows, meta):
    """Grouped horizontal bars of decode tok/s with min–max whiskers, one group per shape."""
    colors = {"flint-int8-wo": "#1f6feb", "flint-int8-w8a8": "#58a6ff", "flint-f32": "#a5c8ff",
              "ct2-int8": "#d1242f", "ct2-f32": "#ff8182", "hf-f32": "#6e7781"}
    bar_h, gap, group_gap, left, width, top = 18, 4, 22, 230, 480, 48
    vmax = max([r["decode_max"] for r in rows] + [1.0])
    scale = width / (vmax * 1.08)
    shapes = list(dict.fromkeys(r["shape"] for r in rows))
    height = top + sum(len([r for r in rows if r["shape"] == s]) * (bar_h + gap) + group_gap + 16 for s in shapes) + 30
    total_w = left + width + 90
    esc = lambda s: s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{total_w}" height="{height}" '
           f'font-family="Helvetica, Arial, sans-serif" font-size="12">',
           f'<rect width="{total_w}" height="{height}" fill="white"/>',
           f'<text x="10" y="20" font-size="15" font-weight="bold">Decode tokens/s (batch 1, greedy, '
           f'{meta["prompt_tokens"]}→{meta["new_tokens"]} tokens, {meta["threads"]} threads)</text>',
           f'<text x="10" y="37" fill="#555">median; whiskers = min–max; higher is better; {esc(meta["date"])}</text>']
    y = top
    for s in shapes:
        out.append(f'<text x="10" y="{y + 12}" font-weight="bold">{esc(s)}</text>')
        y += 16
        for r in [r for r in rows if r["shape"] == s]:
            w = r["decode_tps"] * scale
            out.append(f'<text x="{left - 8}" y="{y + bar_h - 5}" text-anchor="end">{esc(r["label"])}</text>')
            out.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{colors[r["engine"]]}"/>')
            x0, x1, ym = left + r["decode_min"] * scale, left + r["decode_max"] * scale, y + bar_h / 2
            if x1 - x0 > 0.5:
                out.append(f'<path d="M{x0:.1f} {ym}H{x1:.1f}M{x0:.1f} {ym - 4}V{ym + 4}M{x1:.1f} {ym - 4}V{ym + 4}" '
                           f'stroke="black" stroke-width="1"/>')
            out.append(f'<text x="{max(left + w, x1) + 6:.1f}" y="{y + bar_h - 5}">{r["decode_tps"]:.1f}</text>')
            y += bar_h + gap
        y += group_gap
    out.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{y - group_gap}" stroke="#333"/>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def print_table(rows, meta):
    header = ["shape", "engine", f"enc@{meta['encoder_tokens']}", f"prefill@{meta['encoder_tokens']}",
              "decode", "spread", "ttft ms", "load ms", "RSS MB", "model MB", "dec×ct2", "enc×ct2", "cpu press%"]
    table = [header] + [[r["shape"], r["label"], fmt(r["encoder_tps"], 0), fmt(r["prefill_tps"], 0),
                         fmt(r["decode_tps"]), f"{fmt(r['decode_min'])}–{fmt(r['decode_max'])}", fmt(r["ttft_ms"]),
                         fmt(r["load_ms"], 0), fmt(r["peak_rss_mb"], 0), fmt(r["model_mb"]),
                         fmt(r["decode_ratio"], 2), fmt(r["encoder_ratio"], 2), fmt(r["cpu_pressure_pct"], 0)]
                        for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "_worker":
        return worker_main(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="small,base", help="comma list of small, base, large")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--encoder-tokens", type=int, default=512)
    parser.add_argument("--runs", type=int, default=3, help="measured runs per engine after one warm-up")
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat every engine this many times, interleaved, to see the spread between processes")
    parser.add_argument("--flint", default=".build/release/flint", help="flint binary (relative to the repo root)")
    parser.add_argument("--engines", default=",".join(ENGINE_ORDER), help="comma list of " + ", ".join(ENGINE_ORDER))
    parser.add_argument("--quiet-pressure", type=float, metavar="PCT",
                        help="before each row, wait until CPU pressure (avg10 of /proc/pressure/cpu) is at most PCT")
    parser.add_argument("--quiet-timeout", type=float, default=120, metavar="S",
                        help="longest wait for --quiet-pressure per row (then the row runs anyway)")
    parser.add_argument("--skip-convert", action="store_true", help="use the converted files already in out/")
    parser.add_argument("--json", action="store_true", help="also print the results as JSON on stdout")
    args = parser.parse_args()

    for name in ("threads", "new_tokens", "prompt_tokens", "encoder_tokens", "runs", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.new_tokens < 2:
        parser.error("--new-tokens must be at least 2 (decode speed is measured after the first token)")
    shapes = []
    for s in args.shapes.split(","):
        s = s.strip()
        if s not in SHAPES and s not in SHAPES.values():
            parser.error(f"unknown shape {s!r}; use {', '.join(SHAPES)}")
        shapes.append(SHAPES.get(s, s))
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    for e in engines:
        if e not in ENGINE_ORDER:
            parser.error(f"unknown engine {e!r}; use {', '.join(ENGINE_ORDER)}")

    notes = []
    flint = Path(args.flint)
    if not flint.is_absolute():
        flint = REPO / flint
    if any(e.startswith("flint") for e in engines) and not (flint.is_file() and os.access(flint, os.X_OK)):
        msg = (f"flint binary not found at {flint} (build it with `swift build -c release --product flint`); "
               f"Flint rows skipped")
        log(msg)
        notes.append(msg)
        engines = [e for e in engines if not e.startswith("flint")]
    if any(e.startswith("ct2") for e in engines):
        try:
            import ctranslate2  # noqa: F401
        except ImportError:
            msg = (f"ctranslate2 is not importable by {sys.executable} (pip install ctranslate2 in Tools/.venv-hf); "
                   f"CTranslate2 rows skipped")
            log(msg)
            notes.append(msg)
            engines = [e for e in engines if not e.startswith("ct2")]

    OUT.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "threads": args.threads,
            "prompt_tokens": args.prompt_tokens, "new_tokens": args.new_tokens,
            "encoder_tokens": args.encoder_tokens, "runs": args.runs, "rounds": args.rounds,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {_cpu_model()}",
            "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()), "notes": notes,
            "command": " ".join([_repo_relative(Path(sys.executable)), "Tools/bench/run_peers.py"] + sys.argv[1:])}

    # Preparation: checkpoints and conversions.
    models = {}
    for shape in shapes:
        ckpt = ensure_checkpoint(shape)
        m = {"hf-f32": ckpt}
        if any(e.startswith("flint") for e in engines):
            m["flint-int8"] = convert_flint(flint, ckpt, "int8", OUT / f"{shape}-int8.flint", args.skip_convert)
            m["flint-f32"] = convert_flint(flint, ckpt, "f32", OUT / f"{shape}-f32.flint", args.skip_convert)
        if any(e.startswith("ct2") for e in engines):
            m["ct2-int8"] = convert_ct2(ckpt, "int8", OUT / f"{shape}-ct2-int8", args.skip_convert)
            m["ct2-f32"] = convert_ct2(ckpt, "float32", OUT / f"{shape}-ct2-float32", args.skip_convert)
        models[shape] = m

    plan = {  # engine -> (model key, how to measure)
        "flint-int8-wo": ("flint-int8", lambda p: measure_flint(flint, p, "weight-only", args)),
        "flint-int8-w8a8": ("flint-int8", lambda p: measure_flint(flint, p, "w8a8", args)),
        "flint-f32": ("flint-f32", lambda p: measure_flint(flint, p, "weight-only", args)),
        "ct2-int8": ("ct2-int8", lambda p: measure_worker("ct2", p, "int8", args)),
        "ct2-f32": ("ct2-f32", lambda p: measure_worker("ct2", p, "float32", args)),
        "hf-f32": ("hf-f32", lambda p: measure_worker("hf", p, "default", args)),
    }
    file_of = lambda key, p: p / "model.safetensors" if key == "hf-f32" else (p / "model.bin" if key.startswith("ct2") else p)  # noqa: E731,E501

    raw = {shape: {} for shape in shapes}
    for rnd in range(args.rounds):
        for shape in shapes:
            # Rotate the order each round so slow drifts in machine load do not always hit the same engine.
            order = engines[rnd % len(engines):] + engines[:rnd % len(engines)]
            for engine in order:
                key, measure = plan[engine]
                path = models[shape].get(key)
                if path is None:
                    msg = f"{shape} {engine}: no converted model, row skipped"
                    if msg not in notes:
                        log(msg)
                        notes.append(msg)
                    continue
                if args.quiet_pressure is not None:
                    wait_for_quiet(args.quiet_pressure, args.quiet_timeout)
                load_before = os.getloadavg()[0]
                _, stall0 = cpu_pressure()
                t0 = time.perf_counter()
                try:
                    result = measure(path)
                except (RuntimeError, ValueError) as e:
                    msg = f"{shape} {engine}: {e}"
                    log(msg)
                    notes.append(msg)
                    continue
                _, stall1 = cpu_pressure()
                wall = time.perf_counter() - t0
                result["load_average_before"] = load_before
                result["cpu_pressure_pct"] = None if stall0 is None else (stall1 - stall0) / 1e6 / wall * 100
                result["model_mb"] = size_mb(file_of(key, path))
                result["model_path"] = _repo_relative(path)
                raw[shape].setdefault(engine, []).append(result)
                log(f"[{shape}] round {rnd + 1}/{args.rounds} {engine}: decode "
                    f"{result['decode_tokens_per_second']['median']:.1f} tok/s, prefill@{args.encoder_tokens} "
                    f"{result['prefill_tokens_per_second']['median']:.0f} tok/s, peak RSS "
                    f"{result['peak_rss_mb']:.0f} MB ({wall:.0f} s, CPU pressure {fmt(result['cpu_pressure_pct'], 0)} %, "
                    f"load average {load_before:.1f})")

    results = {shape: {e: merge_rounds(rs) for e, rs in engines_.items()} for shape, engines_ in raw.items()}
    rows = build_rows(results)
    meta["total_seconds"] = round(time.perf_counter() - started, 1)
    print_table(rows, meta)
    for note in notes:
        print(f"note: {note}")
    report = {"meta": meta, "rows": rows, "results": results}
    write_atomic(OUT / "peers.md", markdown(rows, meta))
    write_atomic(OUT / "peers.svg", svg_chart(rows, meta))
    write_atomic(OUT / "peers.json", json.dumps(report, indent=1) + "\n")
    log(f"wrote {OUT / 'peers.md'}, peers.svg, peers.json ({meta['total_seconds']} s in all)")
    if args.json:
        print(json.dumps(report, indent=1))
    return 0


def _repo_relative(path):
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def _cpu_model():
    """CPU name and the vector extensions the engines' kernels pick from (int8 speed depends on VNNI)."""
    name, flags = platform.processor() or "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    isa = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8") if f in flags]
    return f"{name} ({' '.join(isa) or 'no AVX2'})"


if __name__ == "__main__":
    sys.exit(main())
