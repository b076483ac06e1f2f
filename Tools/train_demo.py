#!/usr/bin/env python3
"""Trains the `demo` fixture: a small FLAN-style T5 (gated-gelu, untied head) that reverses a list of 2-6 words,
e.g. "reverse: red apple blue" -> "blue apple red", so a person can check its output by eye.

Words come from fixture_common.DEMO_WORDS (100 words, each one piece of the small vocab). CPU only, fixed seeds and a fixed
step budget (--steps, with the learning-rate schedule tied to steps, not time) so a rerun reproduces the weights;
it stops early, deterministically, once a dev set is solved, and aborts at --max-seconds as a safety net. Reports exact-match accuracy on 200 held-out
examples (never trained on) and writes Tests/Fixtures/models/demo/ with save_pretrained (safetensors) plus
spiece.model and training.json (settings, accuracy, sample generations).
Run with Tools/.venv-hf/bin/python Tools/train_demo.py
"""
import argparse
import json
import math
import random
import shutil
import time
import warnings
from pathlib import Path

import torch
import transformers
from transformers import T5Config, T5ForConditionalGeneration, T5Tokenizer

from fixture_common import DEMO_WORDS, MODELS_DIR, SMALL_SPIECE

warnings.filterwarnings("ignore")
transformers.logging.set_verbosity_error()


def random_words(rng):
    return [rng.choice(DEMO_WORDS) for _ in range(rng.randint(2, 6))]


def prompt_of(words):
    return "reverse: " + " ".join(words)


def target_of(words):
    return " ".join(reversed(words))


def exact_match(model, tokenizer, examples, batch_size=100):
    model.eval()
    outputs = []
    with torch.no_grad():
        for i in range(0, len(examples), batch_size):
            chunk = examples[i:i + batch_size]
            enc = tokenizer([prompt_of(w) for w in chunk], return_tensors="pt", padding=True)
            gen = model.generate(**enc, do_sample=False, num_beams=1, max_new_tokens=12)
            outputs += tokenizer.batch_decode(gen, skip_special_tokens=True)
    model.train()
    hits = sum(out == target_of(w) for out, w in zip(outputs, examples))
    return hits / len(examples), outputs


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--max-seconds", type=float, default=3000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(MODELS_DIR / "demo"))
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tokenizer = T5Tokenizer(vocab_file=str(SMALL_SPIECE))
    for w in DEMO_WORDS:
        assert tokenizer.tokenize(w) == ["\u2581" + w], (w, tokenizer.tokenize(w))
    vocab_size = (len(tokenizer) + 7) // 8 * 8
    config = T5Config(
        vocab_size=vocab_size, d_model=128, d_kv=32, num_heads=4, d_ff=256, num_layers=2, num_decoder_layers=2,
        feed_forward_proj="gated-gelu", tie_word_embeddings=False, relative_attention_num_buckets=32,
        relative_attention_max_distance=128, dropout_rate=0.0, decoder_start_token_id=0, pad_token_id=0,
        eos_token_id=1)
    model = T5ForConditionalGeneration(config)
    model.train()

    test_rng, dev_rng, train_rng = random.Random(1), random.Random(2), random.Random(3)
    test_set = [random_words(test_rng) for _ in range(200)]
    dev_set = [random_words(dev_rng) for _ in range(200)]
    held_out = {tuple(w) for w in test_set + dev_set}

    batch_size, peak_lr, warmup = 64, 2e-3, 300
    optimizer = torch.optim.AdamW(model.parameters(), lr=peak_lr, weight_decay=0.0)
    start = time.time()
    step, dev_acc, loss_value = 0, 0.0, float("nan")
    timed_out = False
    while step < args.steps:
        if time.time() - start > args.max_seconds:
            timed_out = True
            print(f"WARNING: stopped by --max-seconds after {step} steps; the result depends on machine speed")
            break
        batch = []
        while len(batch) < batch_size:
            words = random_words(train_rng)
            if tuple(words) not in held_out:
                batch.append(words)
        enc = tokenizer([prompt_of(w) for w in batch], return_tensors="pt", padding=True)
        labels = tokenizer([target_of(w) for w in batch], return_tensors="pt", padding=True).input_ids
        labels[labels == tokenizer.pad_token_id] = -100
        # Linear warmup, then cosine decay to 10 % over the step budget.
        progress = step / args.steps
        lr = peak_lr * min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = model(**enc, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        loss_value = loss.item()
        if step % 500 == 0:
            dev_acc, _ = exact_match(model, tokenizer, dev_set)
            print(f"step {step} {time.time() - start:.0f}s loss {loss_value:.4f} lr {lr:.2e} dev exact {dev_acc:.3f}",
                  flush=True)
            if dev_acc == 1.0 and loss_value < 0.01:
                break
    train_seconds = time.time() - start

    model.eval()
    test_acc, outputs = exact_match(model, tokenizer, test_set)
    samples = [{"prompt": prompt_of(w), "expected": target_of(w), "output": o}
               for w, o in zip(test_set[:12], outputs[:12])]
    print(f"steps {step}, {train_seconds:.0f}s, held-out exact match {test_acc:.3f} on {len(test_set)}")
    for s in samples[:6]:
        print(f"  {s['prompt']!r} -> {s['output']!r}")

    out = Path(args.out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    shutil.copy(SMALL_SPIECE, tmp / "spiece.model")
    (tmp / "training.json").write_text(json.dumps({
        "task": "reverse a list of 2-6 words from fixture_common.DEMO_WORDS",
        "steps": step, "batch_size": batch_size, "peak_lr": peak_lr, "train_seconds": round(train_seconds),
        "threads": args.threads, "step_budget": args.steps, "timed_out": timed_out, "final_train_loss": loss_value,
        "heldout_exact_match": test_acc, "heldout_examples": len(test_set),
        "samples": samples, "torch": torch.__version__, "transformers": transformers.__version__,
    }, indent=1) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)
    print(f"saved -> {out}")


if __name__ == "__main__":
    main()
