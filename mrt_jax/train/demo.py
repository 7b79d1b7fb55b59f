"""Builds the CPU demo's assets: synthetic problems, a tiny tokenizer, and a tiny model
warm-started by SFT on traces that mix useful and wasteful blocks (DESIGN.md §1, issue 7).

Everything is derived from the config's `demo` block and `seed`; a directory that already
holds an asset is reused, so re-running the demo command resumes instead of rebuilding.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from ml_collections import ConfigDict

from mrt_jax import models
from mrt_jax.data import elimination
from mrt_jax.data.sources import write_jsonl
from mrt_jax.models import tokenizer as tokenizer_lib
from mrt_jax.train.sft import train_sft


def _task(config: ConfigDict) -> elimination.EliminationConfig:
  d = config.demo
  return elimination.EliminationConfig(num_candidates=d.num_candidates, num_clues=d.num_clues,
                                       waste_prob=d.waste_prob)


def warm_start_pairs(config: ConfigDict, tokenizer, problems) -> list[tuple[list[int], list[int]]]:
  """(prompt, completion) pairs: natural traces and forced answers after the suffix (μ)."""
  rng = np.random.default_rng([config.seed, 1])
  task = _task(config)
  eos = [tokenizer.eos_token_id]
  pairs = []
  for problem in problems:
    prompt = tokenizer_lib.render_prompt(tokenizer, problem["problem"])
    order = elimination.sample_clue_order(problem, rng, task)
    natural = elimination.trace_completion(problem, order).text
    forced = elimination.forced_completion(problem, order, int(rng.integers(len(order) + 1)),
                                           rng, config.probe.termination_suffix).text
    for text in (natural, forced):
      pairs.append((prompt, tokenizer.encode(text, add_special_tokens=False) + eos))
  return pairs


def build_assets(config: ConfigDict) -> None:
  """Writes data.path, the tokenizer and the warm-started model if they are missing."""
  d = config.demo
  task = _task(config)
  if not os.path.exists(config.data.path):
    problems = elimination.generate_problems(d.num_problems, config.seed, task)
    write_jsonl(config.data.path, problems)
  if not os.path.exists(os.path.join(config.model.tokenizer_path, "tokenizer.json")):
    corpus = elimination.tokenizer_corpus(200, config.seed, task, config.probe.termination_suffix)
    tokenizer_lib.build_tiny_tokenizer(config.model.tokenizer_path, corpus,
                                       vocab_size=d.vocab_size)
  if os.path.exists(os.path.join(config.model.path, "config.json")):
    return
  tokenizer = tokenizer_lib.load_tokenizer(config.model.tokenizer_path)
  vocab = -(-len(tokenizer) // 8) * 8  # Pad like real checkpoints (vocab >= tokenizer size).
  model_config = models.config_from_hf_dict({
      "architectures": ["Qwen2ForCausalLM"], "vocab_size": vocab, "hidden_size": d.hidden_size,
      "intermediate_size": d.intermediate_size, "num_hidden_layers": d.num_layers,
      "num_attention_heads": d.num_heads, "num_key_value_heads": d.num_kv_heads,
      "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "max_position_embeddings": 1024,
      "tie_word_embeddings": True, "bos_token_id": tokenizer.bos_token_id,
      "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id})
  params = models.init_params(model_config, jax.random.key(config.seed))
  if d.sft_steps > 0:
    problems = elimination.generate_problems(d.sft_problems, config.seed + 1, task)
    pairs = warm_start_pairs(config, tokenizer, problems)
    print(f"demo: SFT warm start on {len(pairs)} traces for {d.sft_steps} steps", flush=True)
    params, _ = train_sft(model_config, params, pairs, steps=d.sft_steps,
                          batch_size=d.sft_batch_size, learning_rate=d.sft_learning_rate,
                          seed=config.seed, log_every=max(1, d.sft_steps // 10))
  models.save_hf(model_config, params, config.model.path)
