"""Causal attention in blocks of queries against one pass over every key, in the same run.

  python benchmarks/attention.py            # the CPU demo's SFT shapes
  python benchmarks/attention.py --quick    # smoke run

Self-attention (training passes, prefills) runs `layers.attention(causal=True)`: queries in
blocks of about `layers.CAUSAL_BLOCK`, each block reading only the keys up to its last query.
The peer is the same call with `causal=False`: one pass over every key with the same products
(heads-major operands), measured interleaved with it:
- attention alone, forward and forward + backward, at the demo's SFT shapes (16 rows of 272
  tokens, 4 query heads, 2 KV heads, head dim 32);
- the whole SFT train step of the demo's 0.35M-parameter model on those rows (the peer's step
  is the same program with the model's attention switched to one pass).
Times are the best of `--repeats` interleaved calls after a warm-up (compiles excluded). The
last line is one JSON object of the headline ratios.
"""

from __future__ import annotations

import argparse
import functools
import json
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


def _ready(fn):
  return lambda: jax.block_until_ready(fn())


def attention_times(a) -> dict[str, float]:
  """Forward and forward + backward of attention alone, blocked and one pass."""
  B, T, H, K, E = a.rows, a.length, 4, 2, 32
  keys = jax.random.split(jax.random.key(0), 4)
  q, k, v = (jax.random.normal(key, (B, T, n, E)) for key, n in zip(keys, (H, K, K)))
  cotangent = jax.random.normal(keys[3], (B, T, H, E))
  mask = jnp.broadcast_to(jnp.tril(jnp.ones((T, T), bool)), (B, T, T))
  fns = {}
  for name, causal in (("blocks", True), ("one_pass", False)):
    attend = functools.partial(layers.attention, causal=causal)
    forward = jax.jit(lambda q, k, v, attend=attend: attend(q, k, v, mask))
    grads = jax.jit(jax.grad(lambda q, k, v, attend=attend: jnp.sum(attend(q, k, v, mask)
                                                                     * cotangent),
                             argnums=(0, 1, 2)))
    fns[f"forward_{name}"] = _ready(lambda f=forward: f(q, k, v))
    fns[f"backward_{name}"] = _ready(lambda g=grads: g(q, k, v))
  return best_times(fns, a.repeats)


def sft_step_times(a) -> dict[str, float]:
  """The demo model's SFT train step with blocked attention and with one pass."""
  config = models.config_from_hf_dict({
      "architectures": ["Qwen2ForCausalLM"], "vocab_size": 376, "hidden_size": 128,
      "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
      "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "rope_theta": 500.0,
      "tie_word_embeddings": True, "max_position_embeddings": 1024})
  optimizer = make_optimizer(OptimizerConfig(learning_rate=1e-3, total_steps=1000))
  rng = np.random.default_rng(0)
  batch = {"tokens": rng.integers(0, 376, (a.rows, a.length)).astype(np.int32),
           "mask": np.ones((a.rows, a.length), np.float32)}
  blocked = layers.attention
  one_pass = lambda q, k, v, mask, causal=False: blocked(q, k, v, mask)
  fns = {}
  for name, attend in (("blocks", blocked), ("one_pass", one_pass)):
    with mock.patch.object(layers, "attention", attend):  # traced at the warm-up call below
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
  ratios = {"attention_forward": att["forward_one_pass"] / att["forward_blocks"],
            "attention_backward": att["backward_one_pass"] / att["backward_blocks"],
            "sft_step": sft["one_pass"] / sft["blocks"]}
  print(f"{'':28s}{'blocks ms':>11s}{'one pass ms':>13s}{'ratio':>8s}")
  for label, blocks, single, ratio in (
      ("attention forward", att["forward_blocks"], att["forward_one_pass"],
       ratios["attention_forward"]),
      ("attention forward+backward", att["backward_blocks"], att["backward_one_pass"],
       ratios["attention_backward"]),
      ("SFT train step (demo model)", sft["blocks"], sft["one_pass"], ratios["sft_step"])):
    print(f"{label:28s}{blocks * 1e3:11.1f}{single * 1e3:13.1f}{ratio:7.2f}x")
  headline = {f"{k}_blocks_over_one_pass": round(v, 3) for k, v in ratios.items()}
  print(json.dumps(headline))
  return headline


if __name__ == "__main__":
  main()
