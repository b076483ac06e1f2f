#!/usr/bin/env python3
"""Writes the random-weight model fixtures under Tests/Fixtures/models/<name>/ with transformers' own
save_pretrained (safetensors), each with config.json, generation_config.json (when the class writes one),
spiece.model (copy of the vocabulary used) and the weights. Fixed seeds.

  flan-tiny          FLAN-style T5 (gated-gelu, untied lm_head), d_model 40, inner 32, d_ff 72, 2+2, small vocab
  flan-tiny-sharded  the same weights as flan-tiny in >= 3 safetensors shards + model.safetensors.index.json
  t5-tiny            original-T5 style (relu, tied embeddings), d_model 64, d_kv 16, 4 heads, d_ff 128, 2+2
  t5-vocab32k        real T5 vocabulary (vocab_size 32128), relu tied, d_model 32, d_kv 8, 4 heads, d_ff 64, 1+1
  t5-encoder         T5EncoderModel, gated-gelu, d_model 48, small vocab
  flan-long          FLAN-style with real T5's head size: d_kv 64, 2 heads, d_model 64, d_ff 128, 2+2 (its golden
                     has a >= 300-token input, beyond every kernel block size)
  flan-tiny-f16      flan-tiny's weights saved by save_pretrained after .half() (float16 safetensors, no spiece)
  flan-tiny-bf16     the same after .bfloat16()
  umt5-tiny          UMT5ForConditionalGeneration (model_type umt5: a relative_attention_bias table in every
                     self-attention layer of both stacks), gated-gelu, untied lm_head like google/umt5-*,
                     d_model 16, d_kv 4, 4 heads, d_ff 32, 3+3 layers; no spiece.model copied (the fixture budget):
                     it uses vocab/small/spiece.model, which its golden and the tests take from there
  pile-t5-tiny       like EleutherAI/pile-t5-*: UMT5ForConditionalGeneration with a gated-SiLU FFN
                     (feed_forward_proj "gated-silu"), untied, d_model 16, d_kv 4, 4 heads, d_ff 32, 2+2 layers; no
                     spiece.model (uses vocab/small/spiece.model, as umt5-tiny)
(`demo` is trained by train_demo.py; byt5-tiny by make_byt5_fixtures.py.)
Run with Tools/.venv-hf/bin/python Tools/make_model_fixtures.py [names...]  (no names: all of them)
"""
import json
import shutil
import sys
import warnings

import torch
import transformers
from safetensors import safe_open
from transformers import (T5Config, T5EncoderModel, T5ForConditionalGeneration, T5Tokenizer, UMT5Config,
                          UMT5ForConditionalGeneration)

from fixture_common import MODELS_DIR, SMALL_SPIECE, T5_SPIECE

warnings.filterwarnings("ignore")
transformers.logging.set_verbosity_error()

EOS_ROW_SCALE = 3.0
SPECIAL_IDS = dict(pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)


def padded_vocab_size(spiece):
    """Tokenizer length (pieces + 100 sentinels) rounded up to a multiple of 8, as T5's 32100 -> 32128."""
    return (len(T5Tokenizer(vocab_file=str(spiece))) + 7) // 8 * 8


def save(model, name, spiece, **save_kwargs):
    out = MODELS_DIR / name
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True, **save_kwargs)
    if spiece is not None:
        shutil.copy(spiece, tmp / "spiece.model")
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)
    stored = []
    for f in sorted(out.glob("*.safetensors")):
        with safe_open(f, "pt") as sf:
            stored += list(sf.keys())
    config = json.loads((out / "config.json").read_text())
    print(f"{name}: {sum(p.numel() for p in model.parameters())} params, "
          f"{len(stored)} stored tensors, files {sorted(p.name for p in out.iterdir())}, "
          f"tie_word_embeddings in config.json: {config.get('tie_word_embeddings', '<absent>')}")
    return out


def make_model(cls, seed, residual_scale=1.0, config_class=T5Config, **config_kwargs):
    torch.manual_seed(seed)
    config = config_class(**SPECIAL_IDS, **config_kwargs)
    model = cls(config).eval()
    reshape_random_weights(model, residual_scale)
    return model


def reshape_random_weights(model, residual_scale):
    """Makes transformers' random init a sharper test (same seed -> same weights):
    - norm weights are all 1.0 after init, so an engine that ignored them would still match: draw them from
      U(0.5, 1.5), and the decoder's final norm from U(1.5, 3.0) to widen the logit spread (fewer near-ties);
    - the relative position bias init is small (std d_model^-0.5): x4 so a wrong bucket changes the output;
    - tied models (residual_scale > 1): the decoder input embedding equals the output embedding, so with random
      weights the residual stream is dominated by the current token's own embedding and greedy decoding just
      repeats it. Scaling the attention output (o) and FFN output (wo) projections lets the layers dominate.
    - eos (id 1) hardly ever wins with random weights, so generation would always run to max_new_tokens and
      beam search's finished-hypothesis rules (length_penalty, early_stopping) would go untested: scale the eos
      row of the output embedding by EOS_ROW_SCALE so some hypotheses end early.
    """
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name == "decoder.final_layer_norm.weight":
                param.uniform_(1.5, 3.0)
            elif "layer_norm" in name:
                param.uniform_(0.5, 1.5)
            elif "relative_attention_bias" in name:
                param.mul_(4.0)
            elif name.endswith(".o.weight") or name.endswith(".wo.weight"):
                param.mul_(residual_scale)
        if isinstance(model, (T5ForConditionalGeneration, UMT5ForConditionalGeneration)):
            model.get_output_embeddings().weight[model.config.eos_token_id].mul_(EOS_ROW_SCALE)


def main(names):
    wanted = lambda name: not names or name in names
    small_vocab = padded_vocab_size(SMALL_SPIECE)
    # The real T5 checkpoints pad 32100 to 32128 (a multiple of 128, not 8); keep their number.
    assert len(T5Tokenizer(vocab_file=str(T5_SPIECE))) == 32100
    t5_vocab = 32128

    flan_tiny = make_model(
        T5ForConditionalGeneration, seed=101, vocab_size=small_vocab, d_model=40, d_kv=8, num_heads=4, d_ff=72,
        num_layers=2, num_decoder_layers=2, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
        relative_attention_num_buckets=32, relative_attention_max_distance=128)
    if wanted("flan-tiny"):
        save(flan_tiny, "flan-tiny", SMALL_SPIECE)
    if wanted("flan-tiny-sharded"):
        # ~150 kB shards: flan-tiny holds ~0.6 MB of float32 weights.
        save(flan_tiny, "flan-tiny-sharded", SMALL_SPIECE, max_shard_size="150KB")
        shards = list((MODELS_DIR / "flan-tiny-sharded").glob("model-*.safetensors"))
        assert len(shards) >= 3, shards

    t5_tiny = make_model(
        T5ForConditionalGeneration, seed=202, vocab_size=small_vocab, d_model=64, d_kv=16, num_heads=4, d_ff=128,
        num_layers=2, num_decoder_layers=2, feed_forward_proj="relu", residual_scale=25.0)
    if wanted("t5-tiny"):
        save(t5_tiny, "t5-tiny", SMALL_SPIECE)

    t5_vocab32k = make_model(
        T5ForConditionalGeneration, seed=303, vocab_size=t5_vocab, d_model=32, d_kv=8, num_heads=4, d_ff=64,
        num_layers=1, num_decoder_layers=1, feed_forward_proj="relu", residual_scale=25.0)
    if wanted("t5-vocab32k"):
        save(t5_vocab32k, "t5-vocab32k", T5_SPIECE)

    t5_encoder = make_model(
        T5EncoderModel, seed=404, vocab_size=small_vocab, d_model=48, d_kv=12, num_heads=4, d_ff=96,
        num_layers=2, feed_forward_proj="gated-gelu", tie_word_embeddings=False)
    if wanted("t5-encoder"):
        save(t5_encoder, "t5-encoder", SMALL_SPIECE)

    flan_long = make_model(
        T5ForConditionalGeneration, seed=505, vocab_size=small_vocab, d_model=64, d_kv=64, num_heads=2, d_ff=128,
        num_layers=2, num_decoder_layers=2, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
        relative_attention_num_buckets=32, relative_attention_max_distance=128)
    if wanted("flan-long"):
        save(flan_long, "flan-long", SMALL_SPIECE)

    # Half-precision source checkpoints (what many hub repos ship): the tokenizer is not needed to test them.
    if wanted("flan-tiny-f16"):
        save(flan_tiny.half(), "flan-tiny-f16", None)
    flan_tiny_bf16 = make_model(
        T5ForConditionalGeneration, seed=101, vocab_size=small_vocab, d_model=40, d_kv=8, num_heads=4, d_ff=72,
        num_layers=2, num_decoder_layers=2, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
        relative_attention_num_buckets=32, relative_attention_max_distance=128)
    if wanted("flan-tiny-bf16"):
        save(flan_tiny_bf16.bfloat16(), "flan-tiny-bf16", None)

    # UMT5: every self-attention layer has its own bias table; 3 layers per stack (not 2) so an engine that reused
    # block 0's table, or took block i's table for block i+1, is caught in more than one place. (Equal layer counts:
    # transformers 4.57's UMT5 sizes its decoder cache by num_layers, so generate() fails with num_decoder_layers
    # larger than num_layers.)
    umt5_tiny = make_model(
        UMT5ForConditionalGeneration, seed=606, config_class=UMT5Config, vocab_size=small_vocab, d_model=16, d_kv=4,
        num_heads=4, d_ff=32, num_layers=3, num_decoder_layers=3, feed_forward_proj="gated-gelu",
        tie_word_embeddings=False, relative_attention_num_buckets=32, relative_attention_max_distance=128)
    if wanted("umt5-tiny"):
        out = save(umt5_tiny, "umt5-tiny", None)
        with safe_open(out / "model.safetensors", "pt") as sf:
            tables = sorted(k for k in sf.keys() if "relative_attention_bias" in k)
        assert len(tables) == 3 + 3, tables

    pile_t5_tiny = make_model(
        UMT5ForConditionalGeneration, seed=808, config_class=UMT5Config, vocab_size=small_vocab, d_model=16, d_kv=4,
        num_heads=4, d_ff=32, num_layers=2, num_decoder_layers=2, feed_forward_proj="gated-silu",
        tie_word_embeddings=False, relative_attention_num_buckets=32, relative_attention_max_distance=128)
    if wanted("pile-t5-tiny"):
        out = save(pile_t5_tiny, "pile-t5-tiny", None)
        config = json.loads((out / "config.json").read_text())
        assert (config["dense_act_fn"], config["is_gated_act"]) == ("silu", True), config


if __name__ == "__main__":
    main(sys.argv[1:])
