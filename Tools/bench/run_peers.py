#!/usr/bin/env python3
"""Flint vs CTranslate2 on FLAN-T5 shapes, side by side in one run: prefill, batch-1 and batch-8 decode, at 1 and 2
threads, each engine's default path and its AVX2 path, several rounds with medians and spreads.

  Tools/.venv-hf/bin/python Tools/bench/run_peers.py                # the full table, unattended, ≤ --budget-minutes
  Tools/.venv-hf/bin/python Tools/bench/run_peers.py --shapes small --threads 1 --rounds 1   # a quick look
  Tools/.venv-hf/bin/python Tools/bench/run_peers.py --update-readme                         # + README's table

Steps (see Tools/bench/README.md for what each number means):
 1. random-weight checkpoints with the real FLAN-T5 configs (Tools/make_bench_checkpoint.py, seed 0) in
    <out>/<shape>/, unless present;
 2. conversions, redone when missing or older than their inputs (never with --skip-convert):
    `flint convert DIR -o <shape>-int8.flint --quant int8` (+ f32 when a flint-f32 engine is asked for), and
    `ct2-transformers-converter --model DIR --quantization int8` (+ float32);
 3. the machine's streaming-read bandwidth (Tools/bench/stream_read.c) at each thread count, and the bytes a
    batch-1 decode step reads for each model (`flint inspect --json`);
 4. rounds × shapes × thread counts × engines, each engine in its own process(es) (peak RSS from wait4's
    ru_maxrss), the engine order rotated every round; every measurement is one warm-up and the median of --runs;
    the reported figure is the median over rounds, the spread min–max of the rounds' medians;
 5. <out>/peers.{md,json} (and README.md's table between its `peers:begin/end` markers with --update-readme).
Rows that cannot be measured (no flint binary, no ctranslate2, a path this CPU lacks, a failed run) are reported as
missing with the reason; numbers are never invented.
"""
import argparse
import json
import math
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
MAKE_CHECKPOINT = REPO / "Tools" / "make_bench_checkpoint.py"
STREAM_READ_SOURCE = BENCH_DIR / "stream_read.c"
SHAPES = {"small": "flan-t5-small", "base": "flan-t5-base", "large": "flan-t5-large"}
EOS_ID = 1
WORKER_TIMEOUT_S = 900

# engine -> how it runs. `isa`: the path forced through the engine's own switch (FLINT_ISA / CT2_FORCE_CPU_ISA);
# None = the engine's default choice on this CPU.
ENGINES = {
    "flint-int8": {"label": "Flint int8", "kind": "flint", "model": "flint-int8", "kernels": None, "isa": None},
    "flint-int8-avx2": {"label": "Flint int8, AVX2 path", "kind": "flint", "model": "flint-int8", "kernels": None,
                        "isa": "avx2"},
    # The AVX2 path as a CPU without AVX-VNNI runs it (Zen 2-4, Intel before Alder Lake), on one that has it.
    "flint-int8-avx2-novnni": {"label": "Flint int8, AVX2 path without AVX-VNNI", "kind": "flint",
                               "model": "flint-int8", "kernels": None, "isa": "avx2",
                               "env": {"FLINT_AVX_VNNI": "0"}},
    "flint-int8-w8a8": {"label": "Flint int8 (w8a8)", "kind": "flint", "model": "flint-int8", "kernels": "w8a8",
                        "isa": None},
    "flint-f32": {"label": "Flint f32", "kind": "flint", "model": "flint-f32", "kernels": None, "isa": None},
    "ct2-int8": {"label": "CTranslate2 int8", "kind": "ct2", "model": "ct2-int8", "compute": "int8", "isa": None},
    "ct2-int8-avx2": {"label": "CTranslate2 int8, AVX2", "kind": "ct2", "model": "ct2-int8", "compute": "int8",
                      "isa": "AVX2"},
    "ct2-f32": {"label": "CTranslate2 float32", "kind": "ct2", "model": "ct2-f32", "compute": "float32", "isa": None},
    "hf-f32": {"label": "transformers float32", "kind": "hf", "model": "hf-f32", "isa": None},
}
DEFAULT_ENGINES = ["flint-int8", "flint-int8-avx2", "ct2-int8", "ct2-int8-avx2"]
# (Flint row, CTranslate2 row, goals from issue 10: workload -> minimum ratio)
COMPARISONS = [
    ("flint-int8", "ct2-int8", {"prefill": 1.2, "decode_b1": 1.5, "decode_b8": 1.2}),
    ("flint-int8-avx2", "ct2-int8-avx2", {"prefill": 1.0, "decode_b1": 1.2}),
    ("flint-int8-avx2-novnni", "ct2-int8-avx2", {"prefill": 1.0, "decode_b1": 1.2}),
]
WORKLOAD_LABEL = {"prefill": "prefill", "decode_b1": "decode b1", "decode_b8": "decode b8"}


def prompt_ids(length):
    """The input `flint bench` feeds its model (BenchCommand.swift): ids spread over the ordinary T5 vocabulary
    (3…31999) by a fixed formula, ending in </s>. The peers get the very same ids so the workloads are identical."""
    ordinary = 32000 - 3
    return [3 + (i * 7919 + 13) % ordinary for i in range(length - 1)] + [EOS_ID]


def median_spread(xs):
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "runs": list(xs)}


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
# Workers: each runs in its own process and prints one JSON object as its last stdout line. One worker measures
# every workload of one engine at one thread count: {workload: {"tokens_per_second": {median,...}, ...}}.

def worker_ct2(args):
    import ctranslate2
    baseline_rss = vm_rss_mb()
    t0 = time.perf_counter()
    translator = ctranslate2.Translator(args.model, device="cpu", compute_type=args.compute_type,
                                        intra_threads=args.threads, inter_threads=1)
    load_ms = (time.perf_counter() - t0) * 1000
    vocab = json.loads((Path(args.model) / "shared_vocabulary.json").read_text())
    to_tokens = lambda ids: [vocab[i] for i in ids]  # noqa: E731

    def generate(ids, n, batch):
        last_stamp = {}

        def on_step(step):
            last_stamp[step.step] = time.perf_counter()  # the batch's last sequence to finish this step
            return False

        start = time.perf_counter()
        # min = max length: the end token is masked until step n (checked: with end_token set to a token greedy
        # decoding emits at step 5, the run still makes 64 steps), so every run decodes exactly n tokens.
        result = translator.translate_batch([to_tokens(ids)] * batch, beam_size=1, min_decoding_length=n,
                                            max_decoding_length=n, return_end_token=True, callback=on_step)
        end = time.perf_counter()
        produced = [len(r.hypotheses[0]) for r in result]
        if sorted(last_stamp) != list(range(n)) or produced != [n] * batch:
            raise SystemExit(f"CTranslate2 made steps {sorted(last_stamp)[:3]}… / tokens {produced}, expected {n} × {batch}")
        return start, [last_stamp[s] for s in range(n)], end

    out = {}
    for workload, (length, n, batch) in workloads(args).items():
        rates, ttft = [], []
        for run in range(args.runs + 1):
            start, stamps, end = generate(prompt_ids(length), n, batch)
            if run == 0:
                continue  # warm-up
            if workload == "prefill":
                # CTranslate2's Translator has no encoder-only call: one decoding step on the long input is the
                # closest (encoder + cross-attention keys/values + one decoder step), measured alike for every row.
                rates.append(length / (end - start))
            else:
                rates.append((n - 1) * batch / (stamps[-1] - stamps[0]))
                ttft.append((stamps[0] - start) * 1000)
        out[workload] = {"tokens_per_second": median_spread(rates)}
        if ttft:
            out[workload]["time_to_first_token_ms"] = median_spread(ttft)
    return {"load_ms": load_ms, "baseline_rss_mb": baseline_rss, "self_peak_rss_mb": vm_hwm_mb(),
            "workloads": out, "versions": {"ctranslate2": ctranslate2.__version__},
            "compute_type": translator.compute_type,
            "forced_isa": os.environ.get("CT2_FORCE_CPU_ISA")}


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
        """Called once per generated token (for the whole batch), right after that step's forward pass."""
        def __init__(self):
            self.stamps = []

        def __call__(self, input_ids, scores):
            self.stamps.append(time.perf_counter())
            return scores

    def generate(ids, n, batch):
        clock = StepClock()
        config = GenerationConfig(do_sample=False, num_beams=1, min_new_tokens=n, max_new_tokens=n, use_cache=True,
                                  decoder_start_token_id=0, eos_token_id=EOS_ID, pad_token_id=0)
        input_ids = torch.tensor([ids] * batch)
        with torch.inference_mode():
            start = time.perf_counter()
            out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                 generation_config=config, logits_processor=LogitsProcessorList([clock]))
            end = time.perf_counter()
        produced = out.shape[1] - 1  # minus the decoder start token
        if len(clock.stamps) != n or produced != n:
            raise SystemExit(f"transformers made {len(clock.stamps)} steps / {produced} tokens, expected exactly {n}")
        return start, clock.stamps, end

    out = {}
    for workload, (length, n, batch) in workloads(args).items():
        rates, ttft = [], []
        for run in range(args.runs + 1):
            start, stamps, end = generate(prompt_ids(length), n, batch)
            if run == 0:
                continue
            if workload == "prefill":
                rates.append(length / (end - start))
            else:
                rates.append((n - 1) * batch / (stamps[-1] - stamps[0]))
                ttft.append((stamps[0] - start) * 1000)
        out[workload] = {"tokens_per_second": median_spread(rates)}
        if ttft:
            out[workload]["time_to_first_token_ms"] = median_spread(ttft)
    return {"load_ms": load_ms, "baseline_rss_mb": baseline_rss, "self_peak_rss_mb": vm_hwm_mb(),
            "workloads": out, "versions": {"torch": torch.__version__, "transformers": transformers.__version__}}


def workloads(args):
    """workload -> (input tokens, new tokens, batch)."""
    table = {"prefill": (args.encoder_tokens, 1, 1)}
    for b in args.batches:
        table[f"decode_b{b}"] = (args.prompt_tokens, args.new_tokens, b)
    return table


def worker_main(argv):
    parser = argparse.ArgumentParser(prog="run_peers.py _worker")
    parser.add_argument("engine", choices=["ct2", "hf"])
    parser.add_argument("--model", required=True)
    parser.add_argument("--compute-type", default="default")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--prompt-tokens", type=int, required=True)
    parser.add_argument("--new-tokens", type=int, required=True)
    parser.add_argument("--encoder-tokens", type=int, required=True)
    parser.add_argument("--batches", type=lambda s: [int(x) for x in s.split(",")], required=True)
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


def ensure_checkpoint(out, shape):
    folder = out / shape
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


def child_env(threads, extra=None):
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    env["TOKENIZERS_PARALLELISM"] = "false"
    # Each row forces (or leaves to the engine) its own path; an inherited setting must not leak into other rows.
    env.pop("FLINT_ISA", None)
    env.pop("CT2_FORCE_CPU_ISA", None)
    env.pop("MKL_ENABLE_INSTRUCTIONS", None)
    env.pop("ONEDNN_MAX_CPU_ISA", None)
    env.update(extra or {})
    return env


def flint_batches_prompts(flint):
    """Whether this flint has real batching (issue 10 item 3: `flint run --batch`, padding + masks, which
    `bench --batch` then measures). Older binaries' `bench --batch B` only decodes B copies of one input through the
    beam state, a different path, so their batch-B decode cells are reported missing instead of measured."""
    done = subprocess.run([str(flint), "run", "--help"], capture_output=True, text=True)
    return done.returncode == 0 and "--batch" in done.stdout


def measure_flint(flint, engine, model, threads, args):
    """One `flint bench` process per workload (prefill: --new-tokens 1 on the long input)."""
    spec = ENGINES[engine]
    extra = {"FLINT_ISA": spec["isa"]} if spec["isa"] else {}
    extra.update(spec.get("env", {}))
    common = ["--threads", str(threads), "--runs", str(args.runs), "--json"]
    if spec["kernels"]:
        common += ["--kernels", spec["kernels"]]
    out, peaks, isas, commands, load_ms = {}, [], set(), [], []
    for workload, (length, n, batch) in workloads(args).items():
        if batch > 1 and not args.flint_batching:
            continue
        cmd = [str(flint), "bench", str(model), "--prompt-tokens", str(length), "--new-tokens", str(n),
               "--batch", str(batch)] + common
        commands.append((" ".join(f"{k}={v}" for k, v in extra.items()) + " " + " ".join(cmd)).strip())
        code, stdout, stderr, peak = run_measured(cmd, child_env(threads, extra))
        if code != 0:
            raise RuntimeError(f"`{commands[-1]}` exited {code}: {(stderr or stdout).strip()[-2000:]}")
        result = last_json_object(stdout)
        peaks.append(peak)
        load_ms.append(result["load_ms"])
        isas.add(result.get("isa", "unreported"))
        one = lambda x: {"median": x, "min": x, "max": x, "runs": [x]}  # noqa: E731  (flint reports its median)
        if workload == "prefill":
            out[workload] = {"tokens_per_second": one(length / (result["time_to_first_token_ms"] / 1000)),
                             "encoder_tokens_per_second": one(result["encoder_tokens_per_second"])}
        else:
            out[workload] = {"tokens_per_second": one(result["decode_tokens_per_second"]),
                             "time_to_first_token_ms": one(result["time_to_first_token_ms"])}
        out[workload]["flint_json"] = result
    isa = ", ".join(sorted(isas))
    if spec["isa"] and isa != spec["isa"]:
        raise RuntimeError(f"FLINT_ISA={spec['isa']} ran the {isa} path (this CPU or this flint lacks {spec['isa']})")
    return {"load_ms": statistics.median(load_ms), "peak_rss_mb": max(peaks), "workloads": out, "isa": isa,
            "commands": commands}


def measure_worker(engine, model, threads, args):
    spec = ENGINES[engine]
    # CTranslate2's int8 GEMM is a library's, which picks its own instruction set: Intel MKL on Intel CPUs, oneDNN
    # elsewhere (CT2_USE_MKL unset: MKL only on a GenuineIntel CPU). MKL_ENABLE_INSTRUCTIONS and ONEDNN_MAX_CPU_ISA
    # cap them too, or "AVX2" would still run AVX-512 VNNI inside the GEMM (on an AMD Zen 4 the forced row then
    # measured the default row's prefill). CT2_VERBOSE=1 makes it log the ISA and the GEMM backend it selected.
    extra = {"CT2_VERBOSE": "1"}
    if spec["isa"]:
        extra.update({"CT2_FORCE_CPU_ISA": spec["isa"], "MKL_ENABLE_INSTRUCTIONS": spec["isa"],
                      "ONEDNN_MAX_CPU_ISA": spec["isa"]})
    cmd = [sys.executable, str(Path(__file__).resolve()), "_worker", spec["kind"], "--model", str(model),
           "--compute-type", spec.get("compute", "default"), "--threads", str(threads),
           "--prompt-tokens", str(args.prompt_tokens), "--new-tokens", str(args.new_tokens),
           "--encoder-tokens", str(args.encoder_tokens), "--batches", ",".join(map(str, args.batches)),
           "--runs", str(args.runs)]
    code, out, err, peak = run_measured(cmd, child_env(threads, extra))
    if code != 0:
        raise RuntimeError(f"{engine} worker exited {code}: {(err or out).strip()[-2000:]}")
    result = last_json_object(out)
    result["peak_rss_mb"] = peak
    selected = [line.split("Selected ISA:", 1)[1].strip() for line in err.splitlines() if "Selected ISA:" in line]
    gemm = [line.split("GEMM_S8 backend:", 1)[1].split("(")[0].strip() for line in err.splitlines()
            if "GEMM_S8 backend:" in line]
    result["isa"] = ((selected[-1] if selected else "unreported") + (" (forced)" if spec["isa"] else "")
                     + (f", int8 GEMM {gemm[-1]}" if gemm and spec.get("compute") != "float32" else ""))
    if spec["isa"] and selected and selected[-1] != spec["isa"]:
        raise RuntimeError(f"CT2_FORCE_CPU_ISA={spec['isa']} selected {selected[-1]}")
    result["commands"] = [(" ".join(f"{k}={v}" for k, v in extra.items()) + " " + " ".join(cmd)).strip()]
    return result


# ----------------------------------------------------------------------------------------------------------------
# Bandwidth and bytes per token.

def stream_bandwidth(out, threads, buffer_mb):
    """Streaming-read GB/s at `threads` threads over `buffer_mb` (stream_read.c, compiled once into <out>): the
    median, min and max of its best software-prefetch distance, with `prefetch_bytes` and `buffer_mb`; or None."""
    binary = out / "stream_read"
    if out_of_date(binary, [STREAM_READ_SOURCE]):
        cc = shutil.which("clang") or shutil.which("cc") or shutil.which("gcc")
        if cc is None:
            return None
        done = subprocess.run([cc, "-O2", "-pthread", str(STREAM_READ_SOURCE), "-o", str(binary)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            log(f"stream_read.c did not compile: {done.stderr.strip()[-500:]}")
            return None
    done = subprocess.run([str(binary), str(threads), str(buffer_mb), "7"], capture_output=True, text=True)
    if done.returncode != 0:
        return None
    report = json.loads(done.stdout)
    return {**report["gb_per_s"], "prefetch_bytes": report["prefetch_bytes"], "buffer_mb": buffer_mb}


def decode_bytes_per_token(flint, model, prompt_tokens, new_tokens):
    """Bytes one batch-1 decode step reads: every decoder weight (values + scales) but the embedding table (one
    row per token) and the cross-attention k/v projections (applied once to the encoder output), the lm_head,
    and the attention caches (cross: 2 × input length × inner dim per layer; self: 2 × the average decoded
    length), binary16 for a model with int8 / int4 tensors (`--kv-cache auto`), else float32."""
    done = subprocess.run([str(flint), "inspect", str(model), "--json"], capture_output=True, text=True)
    if done.returncode != 0:
        return None
    info = last_json_object(done.stdout)
    config, aliases = info["config"], info.get("aliases", {})
    weights = 0
    names = {t["name"] for t in info["tensors"]}
    for t in info["tensors"]:
        name = t["name"]
        decoder = name.startswith("decoder.") and "embed_tokens" not in name and \
            not (".EncDecAttention.k." in name or ".EncDecAttention.v." in name)
        if decoder or name == "lm_head.weight":
            weights += t["bytes"] + t["scale_bytes"]
    if "lm_head.weight" not in names:  # tied: the shared embedding is the output projection
        target = aliases.get("lm_head.weight", "shared.weight")
        weights += sum(t["bytes"] + t["scale_bytes"] for t in info["tensors"] if t["name"] == target)
    inner = config["num_heads"] * config["d_kv"]
    layers = config["num_decoder_layers"]
    cache_element = 2 if any(t["dtype"] in ("i8", "i4") for t in info["tensors"]) else 4
    caches = layers * 2 * inner * cache_element * (prompt_tokens + (new_tokens + 1) / 2)
    return {"weights": weights, "caches": int(caches), "cache_element_bytes": cache_element,
            "total": int(weights + caches)}


# ----------------------------------------------------------------------------------------------------------------
# Results.

def write_atomic(path, text):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def fmt(x, digits=0):
    return "–" if x is None else f"{x:,.{digits}f}".replace(",", " ")


def merge_rounds(rounds):
    """One row from several rounds: per workload, the median of the rounds' medians and their min–max."""
    merged = {"workloads": {}, "rounds": len(rounds)}
    for workload in rounds[0]["workloads"]:
        entry = {}
        for key in ("tokens_per_second", "time_to_first_token_ms", "encoder_tokens_per_second"):
            medians = [r["workloads"][workload][key]["median"] for r in rounds if key in r["workloads"][workload]]
            if medians:
                entry[key] = median_spread(medians)
        merged["workloads"][workload] = entry
    merged["peak_rss_mb"] = max(r["peak_rss_mb"] for r in rounds)
    merged["load_ms"] = statistics.median(r["load_ms"] for r in rounds)
    merged["isa"] = rounds[-1]["isa"]
    pressures = [r["cpu_pressure_pct"] for r in rounds if r.get("cpu_pressure_pct") is not None]
    merged["cpu_pressure_pct"] = max(pressures) if pressures else None
    merged["load_average"] = [r["load_average_before"] for r in rounds]
    merged["model_mb"] = rounds[-1]["model_mb"]
    merged["commands"] = rounds[-1]["commands"]
    return merged


def cell(entry, digits=0):
    if not entry:
        return "missing"
    t = entry["tokens_per_second"]
    return f"{fmt(t['median'], digits)} ({fmt(t['min'], digits)}–{fmt(t['max'], digits)})"


def markdown(results, missing, bandwidth, working_bandwidth, bytes_per_token, meta):
    w = [k for k in meta["workloads"]]
    lines = [
        f"Measured {meta['date']} with `{meta['command']}` ({meta['total_minutes']} min): random weights with the "
        f"real FLAN-T5 configs; the same ids for every engine; prefill = tokens/s of a one-token generation on a "
        f"{meta['encoder_tokens']}-token input (encoder + cross-attention keys/values + first step); decode = "
        f"greedy, {meta['prompt_tokens']}-token input → exactly {meta['new_tokens']} tokens, tokens after the first "
        f"per second (batch 8: all sequences). Each cell: median over {meta['rounds_done']} round(s) of the median of "
        f"{meta['runs']} runs (after a warm-up), with the min–max of the rounds in parentheses. Machine: "
        f"{meta['machine']}; load average {meta['loadavg_start']} at the start, {meta['loadavg_end']} at the end "
        f"(2 cores shared: compare ratios within this run only). {meta['versions']}.",
        "",
        "| shape | threads | engine | path | " + " | ".join(f"{WORKLOAD_LABEL.get(x, x)} tok/s" for x in w)
        + " | peak RSS MB | model MB | CPU pressure % |",
        "|---|---:|---|---|" + "---:|" * len(w) + "---:|---:|---:|",
    ]
    for shape in meta["shapes"]:
        for threads in meta["threads"]:
            for engine in meta["engines"]:
                r = results.get(shape, {}).get(threads, {}).get(engine)
                if r is None:
                    why = missing.get((shape, threads, engine), "not measured")
                    lines.append(f"| {shape} | {threads} | {ENGINES[engine]['label']} | – | "
                                 + " | ".join("missing" for _ in w) + f" | – | – | – |")
                    lines[-1] += f" <!-- {why} -->"
                    continue
                lines.append(f"| {shape} | {threads} | {ENGINES[engine]['label']} | {r['isa']} | "
                             + " | ".join(cell(r['workloads'].get(x)) for x in w)
                             + f" | {fmt(r['peak_rss_mb'])} | {fmt(r['model_mb'], 1)} | {fmt(r['cpu_pressure_pct'])} |")
    lines += ["", "Ratios (Flint ÷ CTranslate2, medians; goal from issue 10 in brackets, ✓ when met):", "",
              "| shape | threads | Flint row ÷ CTranslate2 row | " + " | ".join(WORKLOAD_LABEL.get(x, x) for x in w) + " |",
              "|---|---:|---|" + "---:|" * len(w)]
    for shape in meta["shapes"]:
        for threads in meta["threads"]:
            for flint_row, ct2_row, goals in COMPARISONS:
                a = results.get(shape, {}).get(threads, {}).get(flint_row)
                b = results.get(shape, {}).get(threads, {}).get(ct2_row)
                if flint_row not in meta["engines"] or ct2_row not in meta["engines"]:
                    continue
                cells = []
                for x in w:
                    ea = a and a["workloads"].get(x)
                    eb = b and b["workloads"].get(x)
                    goal = goals.get(x)
                    if not ea or not eb:
                        cells.append("missing")
                        continue
                    ratio = ea["tokens_per_second"]["median"] / eb["tokens_per_second"]["median"]
                    mark = "" if goal is None else (f" [≥ {goal}] ✓" if ratio >= goal else f" [≥ {goal}] ✗")
                    cells.append(f"{ratio:.2f}{mark}")
                lines.append(f"| {shape} | {threads} | {ENGINES[flint_row]['label']} ÷ {ENGINES[ct2_row]['label']} | "
                             + " | ".join(cells) + " |")
    if bandwidth or working_bandwidth:
        lines += ["", "Batch-1 decode against the streaming-read bandwidth (`Tools/bench/stream_read.c`, its best "
                  "software-prefetch distance) over a buffer far larger than the last-level cache (memory) and over "
                  "one the size of the model's decode step (its ceiling where the cache holds much of it; the % is of "
                  "that one); bytes/token = decoder weights incl. scales and lm_head, without the embedding table and "
                  "the cross-attention k/v projections, plus the attention caches at the average position, binary16 "
                  "as Flint keeps them for int8 models:", "",
                  "| shape | bytes/token (weights + caches) | threads | stream-read GB/s, memory | stream-read GB/s, "
                  "working set | engine | decode b1 tok/s | GB/s touched | % of bandwidth [goal ≥ 70 %] |",
                  "|---|---:|---:|---:|---:|---|---:|---:|---:|"]

        def gbps(bw):
            return f"{bw['median']:.1f} ({bw['min']:.1f}–{bw['max']:.1f})" if bw else "–"

        for shape in meta["shapes"]:
            bpt = bytes_per_token.get(shape)
            for threads in meta["threads"]:
                memory_bw = bandwidth.get(threads)
                working_bw = working_bandwidth.get(shape, {}).get(threads)
                ceiling = working_bw or memory_bw
                for engine in [e for e in meta["engines"] if e.startswith("flint")]:
                    r = results.get(shape, {}).get(threads, {}).get(engine)
                    d = r and r["workloads"].get("decode_b1")
                    if not (bpt and ceiling and d):
                        continue
                    tps = d["tokens_per_second"]["median"]
                    touched = bpt["total"] * tps / 1e9
                    lines.append(f"| {shape} | {bpt['total'] / 1e6:.1f} MB ({bpt['weights'] / 1e6:.1f} + "
                                 f"{bpt['caches'] / 1e6:.1f}) | {threads} | {gbps(memory_bw)} | {gbps(working_bw)} | "
                                 f"{ENGINES[engine]['label']} | {tps:.0f} | {touched:.1f} | "
                                 f"{100 * touched / ceiling['median']:.0f} % |")
    notes = list(meta["notes"]) + [f"{s} {t} threads {ENGINES[e]['label']}: {why}"
                                    for (s, t, e), why in sorted(missing.items(), key=str)]
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def update_readme(table):
    readme = REPO / "README.md"
    text = readme.read_text()
    begin, end = "<!-- peers:begin (Tools/bench/run_peers.py --update-readme) -->", "<!-- peers:end -->"
    if begin not in text or end not in text:
        log(f"README.md has no `{begin}` … `{end}` block; not updated")
        return False
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    write_atomic(readme, head + begin + "\n" + table + end + tail)
    return True


def _repo_relative(path):
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def cpu_flags():
    """The CPU's feature flags from /proc/cpuinfo (empty when it cannot be read)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _cpu_model():
    """CPU name and the vector extensions the engines' kernels pick from (int8 speed depends on VNNI)."""
    name, flags = platform.processor() or "unknown CPU", cpu_flags()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    isa = [f for f in ("avx2", "fma", "avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8") if f in flags]
    return f"{name} ({' '.join(isa) or 'no AVX2'})"


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "_worker":
        return worker_main(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="small,base", help="comma list of small, base, large")
    parser.add_argument("--threads", default="1,2", help="comma list of thread counts")
    parser.add_argument("--batches", default="1,8", help="decode batch sizes (comma list)")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--encoder-tokens", type=int, default=512)
    parser.add_argument("--runs", type=int, default=3, help="measured runs per workload after one warm-up")
    parser.add_argument("--rounds", type=int, default=3,
                        help="repeat every measurement this many times, engine order rotated, for the spread")
    parser.add_argument("--budget-minutes", type=float, default=20,
                        help="stop starting new rounds when the next one would end after this (reported)")
    parser.add_argument("--flint", default=".build/release/flint", help="flint binary (relative to the repo root)")
    parser.add_argument("--engines", default=None,
                        help="comma list of " + ", ".join(ENGINES) + " (default: " + ", ".join(DEFAULT_ENGINES)
                             + ", and flint-int8-avx2-novnni on a CPU with AVX-VNNI)")
    parser.add_argument("--out", default=str(BENCH_DIR / "out"), help="checkpoints, converted models, results")
    parser.add_argument("--bandwidth-mb", type=int, default=512, help="stream-read buffer (0: skip the measurement)")
    parser.add_argument("--quiet-pressure", type=float, metavar="PCT",
                        help="before each row, wait until CPU pressure (avg10 of /proc/pressure/cpu) is at most PCT")
    parser.add_argument("--quiet-timeout", type=float, default=30, metavar="S",
                        help="longest wait for --quiet-pressure per row (then the row runs anyway)")
    parser.add_argument("--skip-convert", action="store_true", help="use the converted files already in --out")
    parser.add_argument("--update-readme", action="store_true", help="replace README.md's peer table with this run's")
    parser.add_argument("--json", action="store_true", help="also print the results as JSON on stdout")
    args = parser.parse_args()

    try:
        thread_counts = [int(t) for t in args.threads.split(",")]
        args.batches = [int(b) for b in args.batches.split(",")]
    except ValueError:
        parser.error("--threads and --batches take comma lists of integers")
    if any(t < 1 for t in thread_counts) or any(b < 1 for b in args.batches):
        parser.error("--threads and --batches must be at least 1")
    for name in ("new_tokens", "prompt_tokens", "encoder_tokens", "runs", "rounds"):
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
    if args.engines is None:
        # On a CPU with AVX-VNNI the AVX2 path multiplies with it; most AVX2 CPUs have none, so that path is also
        # measured as they run it.
        engines = DEFAULT_ENGINES + (["flint-int8-avx2-novnni"] if "avx_vnni" in cpu_flags() else [])
    else:
        engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    for e in engines:
        if e not in ENGINES:
            parser.error(f"unknown engine {e!r}; use {', '.join(ENGINES)}")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)

    notes, missing = [], {}
    flint = Path(args.flint)
    if not flint.is_absolute():
        flint = REPO / flint
    runnable = list(engines)
    if any(ENGINES[e]["kind"] == "flint" for e in engines) and not (flint.is_file() and os.access(flint, os.X_OK)):
        why = f"flint binary not found at {flint} (`swift build -c release --product flint`)"
        log(why)
        for e in engines:
            if ENGINES[e]["kind"] == "flint":
                runnable.remove(e)
                for s in shapes:
                    for t in thread_counts:
                        missing[(s, t, e)] = why
    if any(ENGINES[e]["kind"] == "ct2" for e in engines):
        try:
            import ctranslate2  # noqa: F401
        except ImportError:
            why = f"ctranslate2 is not importable by {sys.executable}"
            log(why)
            for e in engines:
                if ENGINES[e]["kind"] == "ct2" and e in runnable:
                    runnable.remove(e)
                    for s in shapes:
                        for t in thread_counts:
                            missing[(s, t, e)] = why

    args.flint_batching = flint.is_file() and flint_batches_prompts(flint)
    if flint.is_file() and not args.flint_batching and any(b > 1 for b in args.batches):
        notes.append("Flint decode at batch > 1 is missing: this flint has no real batching (`flint run --batch`, "
                     "issue 10 item 3), and its `bench --batch` measures a different path")
    started = time.perf_counter()
    versions = []
    try:
        import ctranslate2
        versions.append(f"CTranslate2 {ctranslate2.__version__}")
    except ImportError:
        pass
    if flint.is_file():
        v = subprocess.run([str(flint), "--version"], capture_output=True, text=True)
        if v.returncode == 0:
            versions.append(f"flint --version: {' '.join(v.stdout.split())}")
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "threads": thread_counts,
            "shapes": shapes, "engines": engines, "prompt_tokens": args.prompt_tokens, "new_tokens": args.new_tokens,
            "encoder_tokens": args.encoder_tokens, "runs": args.runs, "rounds": args.rounds,
            "workloads": list(workloads(args)), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {_cpu_model()}",
            "loadavg_start": " ".join(f"{x:.2f}" for x in os.getloadavg()), "notes": notes,
            "versions": "; ".join(versions) or "versions unknown",
            "command": " ".join(["Tools/.venv-hf/bin/python", "Tools/bench/run_peers.py"] + sys.argv[1:])}

    # Preparation: checkpoints, conversions, bandwidth, bytes per token.
    models = {}
    for shape in shapes:
        ckpt = ensure_checkpoint(out, shape)
        m = {"hf-f32": ckpt}
        wanted = {ENGINES[e]["model"] for e in runnable}
        if "flint-int8" in wanted:
            m["flint-int8"] = convert_flint(flint, ckpt, "int8", out / f"{shape}-int8.flint", args.skip_convert)
        if "flint-f32" in wanted:
            m["flint-f32"] = convert_flint(flint, ckpt, "f32", out / f"{shape}-f32.flint", args.skip_convert)
        if "ct2-int8" in wanted:
            m["ct2-int8"] = convert_ct2(ckpt, "int8", out / f"{shape}-ct2-int8", args.skip_convert)
        if "ct2-f32" in wanted:
            m["ct2-f32"] = convert_ct2(ckpt, "float32", out / f"{shape}-ct2-float32", args.skip_convert)
        models[shape] = m
    bandwidth, working_bandwidth, bytes_per_token = {}, {}, {}
    if args.bandwidth_mb > 0:
        for t in thread_counts:
            bw = stream_bandwidth(out, t, args.bandwidth_mb)
            if bw:
                bandwidth[t] = bw
                log(f"stream-read bandwidth over {args.bandwidth_mb} MB, {t} thread(s): {bw['median']:.1f} GB/s "
                    f"({bw['min']:.1f}–{bw['max']:.1f}, prefetching {bw['prefetch_bytes']} bytes ahead)")
        for shape in shapes:
            path = models[shape].get("flint-int8")
            if path and flint.is_file():
                bpt = decode_bytes_per_token(flint, path, args.prompt_tokens, args.new_tokens)
                if bpt:
                    bytes_per_token[shape] = bpt
                    # The same read over a buffer the size of one decode step's reads: where the last-level cache
                    # holds much of a model, that is its ceiling, higher than the memory's.
                    working_mb = max(1, math.ceil(bpt["total"] / 2**20))
                    for t in thread_counts:
                        bw = stream_bandwidth(out, t, working_mb)
                        if bw:
                            working_bandwidth.setdefault(shape, {})[t] = bw
                            log(f"stream-read bandwidth over {working_mb} MB ({shape}'s decode step), {t} thread(s): "
                                f"{bw['median']:.1f} GB/s ({bw['min']:.1f}–{bw['max']:.1f})")

    def file_of(key, p):
        return p / "model.safetensors" if key == "hf-f32" else (p / "model.bin" if key.startswith("ct2") else p)

    raw = {}
    round_seconds = []
    rounds_done = 0
    for rnd in range(args.rounds):
        if round_seconds:
            projected = time.perf_counter() - started + statistics.mean(round_seconds)
            if projected > args.budget_minutes * 60:
                notes.append(f"stopped after {rnds(rounds_done)}: another would end after the "
                             f"{args.budget_minutes:g}-minute budget (--budget-minutes)")
                log(notes[-1])
                break
        round_start = time.perf_counter()
        for shape in shapes:
            for threads in thread_counts:
                # Rotate the order each round so slow drifts in machine load do not always hit the same engine.
                order = runnable[rnd % max(1, len(runnable)):] + runnable[:rnd % max(1, len(runnable))]
                for engine in order:
                    spec = ENGINES[engine]
                    path = models[shape].get(spec["model"])
                    if path is None:
                        missing[(shape, threads, engine)] = "no converted model"
                        continue
                    if args.quiet_pressure is not None:
                        wait_for_quiet(args.quiet_pressure, args.quiet_timeout)
                    load_before = os.getloadavg()[0]
                    _, stall0 = cpu_pressure()
                    t0 = time.perf_counter()
                    try:
                        if spec["kind"] == "flint":
                            result = measure_flint(flint, engine, path, threads, args)
                        else:
                            result = measure_worker(engine, path, threads, args)
                    except (RuntimeError, ValueError, KeyError) as e:
                        missing[(shape, threads, engine)] = str(e).splitlines()[0][:300]
                        log(f"[{shape}] {threads}T {engine}: {e}")
                        continue
                    _, stall1 = cpu_pressure()
                    wall = time.perf_counter() - t0
                    result["load_average_before"] = load_before
                    result["cpu_pressure_pct"] = None if stall0 is None else (stall1 - stall0) / 1e6 / wall * 100
                    result["model_mb"] = size_mb(file_of(spec["model"], path))
                    raw.setdefault(shape, {}).setdefault(threads, {}).setdefault(engine, []).append(result)
                    w = result["workloads"]
                    log(f"[{shape}] round {rnd + 1}/{args.rounds} {threads}T {engine} ({result['isa']}): "
                        + ", ".join(f"{WORKLOAD_LABEL.get(k, k)} {v['tokens_per_second']['median']:.0f}"
                                    for k, v in w.items())
                        + f" tok/s ({wall:.0f} s, load average {load_before:.1f})")
        rounds_done += 1
        round_seconds.append(time.perf_counter() - round_start)

    results = {s: {t: {e: merge_rounds(rs) for e, rs in es.items()} for t, es in ts.items()} for s, ts in raw.items()}
    for s, ts in results.items():
        for t, es in ts.items():
            for e in es:
                missing.pop((s, t, e), None)  # measured in some round
    meta["rounds_done"] = rounds_done
    meta["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    meta["total_minutes"] = round((time.perf_counter() - started) / 60, 1)
    table = markdown(results, missing, bandwidth, working_bandwidth, bytes_per_token, meta)
    print(table)
    report = {"meta": meta, "bandwidth_gb_per_s": bandwidth, "working_set_bandwidth_gb_per_s": working_bandwidth,
              "decode_bytes_per_token": bytes_per_token,
              "results": results, "raw": raw,
              "missing": [{"shape": s, "threads": t, "engine": e, "why": why} for (s, t, e), why in missing.items()]}
    write_atomic(out / "peers.md", table)
    write_atomic(out / "peers.json", json.dumps(report, indent=1, default=str) + "\n")
    log(f"wrote {out / 'peers.md'} and peers.json ({meta['total_minutes']} min in all)")
    if args.update_readme and update_readme(table):
        log("updated README.md's peer table")
    if args.json:
        print(json.dumps(report, indent=1, default=str))
    return 0


def rnds(n):
    return f"{n} round" + ("" if n == 1 else "s")


if __name__ == "__main__":
    sys.exit(main())
