"""Causal attention in blocks of queries against one pass over every key, in the same run.

  python benchmarks/attention.py            # the CPU demo's SFT shapes
  python benchmarks/attention.py --quick    # smoke run

Self-attention (training passes, prefills) runs `layers.attention(causal=True)`: queries in
blocks of about `layers.CAUSAL_BLOCK`, each block reading only the keys up to its last query.
Two peers, measured interleaved with it: the same call with `causal=False` (one pass over every
key with the same heads-major products), and one pass with the products on the token-major
[B, T, K, G, E] operands as the usual einsum writes them (`token_major_attention`):
- attention alone, forward and forward + backward, at the demo's SFT shapes (16 rows of 272
  tokens, 4 query heads, 2 KV heads, head dim 32);
- the whole SFT train step of the demo's 0.35M-parameter model on those rows (each peer's step
  is the same program with the model's attention switched to that peer).
Times are the best of `--repeats` interleaved calls after a warm-up (compiles excluded). The
last line is one JSON object of the headline ratios.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.timing import best_times  # noqa: E402
from mrt_jax import models  # noqa: E402
from mrt_jax.learner.optimizer import OptimizerConfig, make_optimizer  # noqa: E402
from mrt_jax.learner.state import create_state  # noqa: E402
from mrt_jax.learner.step import StepConfig, make_train_step  # noqa: E402
from mrt_jax.models import layers  # noqa: E402


def _args(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--rows", type=int, default=16, help="sequences per SFT step")
  p.add_argument("--length", type=int, default=272, help="tokens per sequence")
  p.add_argument("--repeats", type=int, default=10)
  p.add_argument("--quick", action="store_true")
  a = p.parse_args(argv)
  if a.quick:
    a.rows, a.length, a.repeats = 2, 80, 1
  return a


def token_major_attention(q_BxTxHxE, k_BxSxKxE, v_BxSxKxE, mask_BxTxS, causal=False):
  """One pass, the products on token-major operands (the usual einsum formulation)."""
  del causal  # every query reads every key
  B, T, H, E = q_BxTxHxE.shape
  K = k_BxSxKxE.shape[2]
  q_BxTxKxGxE = q_BxTxHxE.reshape(B, T, K, H // K, E)
  logits = jnp.einsum("BTKGE,BSKE->BKGTS", q_BxTxKxGxE, k_BxSxKxE,
                      preferred_element_type=jnp.float32) / math.sqrt(E)
  logits = jnp.where(mask_BxTxS[:, None, None], logits, layers._MASK_VALUE)
  probs = jax.nn.softmax(logits, axis=-1).astype(v_BxSxKxE.dtype)
  return jnp.einsum("BKGTS,BSKE->BTKGE", probs, v_BxSxKxE).reshape(B, T, H, E)


VARIANTS = ("blocks", "one_pass", "token_major")


def _variant(name):
  """The attention function of one variant, with `layers.attention`'s signature."""
  blocked = layers.attention
  if name == "blocks":
    return blocked
  if name == "one_pass":
    return lambda q, k, v, mask, causal=False: blocked(q, k, v, mask)
  return token_major_attention


def _ready(fn):
  return lambda: jax.block_until_ready(fn())


def attention_times(a) -> dict[str, float]:
  """Forward and forward + backward of attention alone, in each variant."""
  B, T, H, K, E = a.rows, a.length, 4, 2, 32
  keys = jax.random.split(jax.random.key(0), 4)
  q, k, v = (jax.random.normal(key, (B, T, n, E)) for key, n in zip(keys, (H, K, K)))
  cotangent = jax.random.normal(keys[3], (B, T, H, E))
  mask = jnp.broadcast_to(jnp.tril(jnp.ones((T, T), bool)), (B, T, T))
  fns = {}
  for name in VARIANTS:
    attend = functools.partial(_variant(name), causal=True)
    forward = jax.jit(lambda q, k, v, attend=attend: attend(q, k, v, mask))
    grads = jax.jit(jax.grad(lambda q, k, v, attend=attend: jnp.sum(attend(q, k, v, mask)
                                                                     * cotangent),
                             argnums=(0, 1, 2)))
    fns[f"forward_{name}"] = _ready(lambda f=forward: f(q, k, v))
    fns[f"backward_{name}"] = _ready(lambda g=grads: g(q, k, v))
  return best_times(fns, a.repeats)


def sft_step_times(a) -> dict[str, float]:
  """The demo model's SFT train step with each variant's attention."""
  config = models.config_from_hf_dict({
      "architectures": ["Qwen2ForCausalLM"], "vocab_size": 376, "hidden_size": 128,
      "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
      "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "rope_theta": 500.0,
      "tie_word_embeddings": True, "max_position_embeddings": 1024})
  optimizer = make_optimizer(OptimizerConfig(learning_rate=1e-3, total_steps=1000))
  rng = np.random.default_rng(0)
  batch = {"tokens": rng.integers(0, 376, (a.rows, a.length)).astype(np.int32),
           "mask": np.ones((a.rows, a.length), np.float32)}
  fns = {}
  for name in VARIANTS:
    with mock.patch.object(layers, "attention", _variant(name)):  # traced at the warm-up call below
      step = make_train_step(config, StepConfig(objective="sft"), optimizer)
      state = [create_state(models.init_params(config, jax.random.key(0)), optimizer)]
      state[0], _ = step(state[0], batch)

    def run(step=step, state=state):
      state[0], metrics = step(state[0], batch)
      jax.block_until_ready(metrics["loss"])
    fns[name] = run
  return best_times(fns, a.repeats)


def main(argv=None) -> dict[str, float]:
  a = _args(argv)
  print(f"devices: {jax.devices()}; {a.rows} rows x {a.length} tokens; best of {a.repeats}")
  att = attention_times(a)
  sft = sft_step_times(a)
  rows = {"attention_forward": {v: att[f"forward_{v}"] for v in VARIANTS},
          "attention_backward": {v: att[f"backward_{v}"] for v in VARIANTS},
          "sft_step": sft}
  labels = {"attention_forward": "attention forward",
            "attention_backward": "attention forward+backward",
            "sft_step": "SFT train step (demo model)"}
  print(f"{'':28s}{'blocks ms':>10s}{'one pass ms':>12s}{'token-major ms':>15s}"
        f"{'ratios':>16s}")
  headline = {}
  for key, t in rows.items():
    over_one_pass, over_token_major = t["one_pass"] / t["blocks"], t["token_major"] / t["blocks"]
    headline[f"{key}_blocks_over_one_pass"] = round(over_one_pass, 3)
    headline[f"{key}_blocks_over_token_major"] = round(over_token_major, 3)
    print(f"{labels[key]:28s}{t['blocks'] * 1e3:10.1f}{t['one_pass'] * 1e3:12.1f}"
          f"{t['token_major'] * 1e3:15.1f}{over_one_pass:8.2f}x{over_token_major:7.2f}x")
  print(json.dumps(headline))
  return headline


if __name__ == "__main__":
  main()
