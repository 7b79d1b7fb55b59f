"""`Sampler`: bucketed, jitted generation from prompts (and, in `fork.py`, from prefixes).

A `Sampler` is a frozen settings object; params come with each call (they change every RL
step). Each call pads its inputs to shape buckets, prefills every prompt once, and decodes the
rows in phases over growing cache windows, finished rows leaving the batch and queued ones
taking their slots (`schedule.py`, `decode.py`).

Seed convention: row r of a result (prompt-major: prompt p, sample n -> r = p * num_samples + n)
draws its randomness from `fold_in(key(seed), r)`, folded with the token index. A row's samples
therefore do not depend on the batch it was decoded in: `num_samples=n` equals repeating each
prompt n times with `num_samples=1` under the same seed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from mrt_jax.models.config import ModelConfig
from mrt_jax.models.sharding import (SAMPLE_RULES, Rules, from_host, named_sharding,
                                     to_host)
from mrt_jax.models.transformer import KVCache, Prefix
from mrt_jax.models.weights import Params
from mrt_jax.sampling import buckets, decode, schedule, score
from mrt_jax.sampling.fork import Probe, arrange
from mrt_jax.sampling.rules import SamplingRules

FINISH_STOP = "stop"
FINISH_LENGTH = "length"


@dataclasses.dataclass(frozen=True)
class SampleResult:
  """Generated continuations, one row per (prompt or probe, sample).

  Attributes:
    tokens: generated tokens only (not the prompt), ending with the stop token(s) when the row
      finished on a stop.
    logprobs: f32 arrays aligned with `tokens` (`rules.py` states the convention).
    finish_reasons: 'stop' (a stop token or sequence was emitted) or 'length' (budget reached).
    cache: with `keep_cache=True`, the KV cache whose row r holds result row r's prompt and all
      its generated tokens (rows past the result are padding): a trunk for `Sampler.fork`.
      Per-layer buffers (`transformer.unstack_layers`) unless the sampler scans its layers.
  """
  tokens: list[list[int]]
  logprobs: list[np.ndarray]
  finish_reasons: list[str]
  cache: KVCache | None = None


@dataclasses.dataclass(frozen=True)
class Sampler:
  """Jitted sampler for one architecture; compiles once per shape bucket.

  Attributes:
    config: the architecture.
    prompt_buckets: prompt lengths are padded up to one of these; longer prompts are an error.
    new_token_buckets: `max_new_tokens` is padded up to one of these (output buffer length).
    suffix_buckets: fork suffix lengths are padded up to one of these. Quarter octaves: every
      probe slot prefills the padded width, and a run uses one suffix (one compile).
    compute_dtype: activation dtype; None = the params' dtype.
    cache_dtype: KV cache dtype; None = the compute dtype (or the params' dtype).
    mesh: run sharded on this mesh (params should be placed with the same `rules`); None = the
      default device.
    rules: logical-axis sharding rules (tensor parallel over heads/FFN/vocab, batch over data).
    scan_layers: scan the layer loop (compile time independent of depth) or unroll it over
      per-layer cache buffers (the default). A scanned decode step copies each layer's slice
      of the stacked cache: XLA:CPU copies its weights and cache slices too (2-3x slower
      steps for small models), and libtpu copies every layer's K and V cache on every step,
      which the unrolled loop does not (`benchmarks/decode_copies.py`).
    max_batch_rows: the most sequences decoded at once (a power of two, a multiple of the
      mesh's batch shards); a call with more queues the rest, and a queued sequence takes the
      slot of one that finished (continuous batching). None: every sequence of a call at once.
    phased: decode in phases over growing cache windows, finished rows leaving the batch
      between phases (`schedule.py`); False: one phase over the whole new-token bucket, every
      row kept until the last one finishes (the static batch; the same tokens).
    min_phase_tokens: steps of the shortest phase (each phase is a quarter of its window,
      rounded up to a power of two, at least this many steps).
    cpu_layouts: lay out the decode for XLA:CPU's dot kernels, which otherwise transpose an
      operand on every step: decode phases hold each layer's keys as [B, K, E, S]
      (`KVCache.keys_ExS`; the cache enters and leaves a phase as [B, K, S, E]) and a call's
      split weights hold the attention output projection as [E, H, D] (`o_EHD`,
      `decode.params_in_layout`). The same tokens either way (the tests compare the
      log-probs at 1e-5; on the benchmark's workload they are bitwise equal). None: on where
      the sampler runs on CPU (measured faster there, BENCHMARKS.md), off on TPU and GPU.
      Needs scan_layers=False.
  """
  config: ModelConfig
  prompt_buckets: tuple[int, ...] = (32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384,
                                     32768)
  new_token_buckets: tuple[int, ...] = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192,
                                        16384, 32768)
  suffix_buckets: tuple[int, ...] = buckets.fine_ladder(4, 256)
  compute_dtype: Any = None
  cache_dtype: Any = None
  mesh: Mesh | None = None
  rules: Rules = SAMPLE_RULES
  scan_layers: bool = False
  max_batch_rows: int | None = None
  phased: bool = True
  min_phase_tokens: int = 64
  cpu_layouts: bool | None = None

  def __post_init__(self):
    n = self.max_batch_rows
    if n is not None and (n < 1 or n & (n - 1) or n % self._batch_multiple()):
      raise ValueError(f"max_batch_rows must be a power of two and a multiple of the mesh's "
                       f"{self._batch_multiple()} batch shards, got {n}")
    if self.min_phase_tokens < 1:
      raise ValueError(f"min_phase_tokens must be >= 1, got {self.min_phase_tokens}")
    if self.cpu_layouts and self.scan_layers:
      raise ValueError("cpu_layouts=True lays out per-layer buffers and weights; it needs "
                       "scan_layers=False")

  # --- helpers shared with fork.py ------------------------------------------------------------

  def _cache_dtype(self, params: Params):
    return self.cache_dtype or self.compute_dtype or params["embed"]["embedding"].dtype

  def _batch_multiple(self) -> int:
    """Rows are padded to a multiple of the mesh's batch shards so they split evenly."""
    if self.mesh is None:
      return 1
    axes = self.rules["batch"]
    axes = (axes,) if isinstance(axes, str) else tuple(axes or ())
    return int(np.prod([self.mesh.shape[a] for a in axes if a in self.mesh.shape]))

  def _cpu_layouts(self) -> bool:
    if self.cpu_layouts is not None:
      return self.cpu_layouts
    platform = (self.mesh.devices.flat[0].platform if self.mesh is not None
                else jax.default_backend())
    return platform == "cpu" and not self.scan_layers

  def _context(self):
    return jax.set_mesh(self.mesh) if self.mesh is not None else contextlib.nullcontext()

  def _put(self, x: np.ndarray, logical: tuple[str | None, ...]) -> jax.Array:
    if self.mesh is None:
      return jnp.asarray(x)
    # Every process holds the same host batch and fills its own devices' shards.
    return from_host(x, named_sharding(self.mesh, logical, self.rules, x.shape))

  def _new_tokens(self, max_new_tokens: int) -> int:
    if int(max_new_tokens) <= 0:
      raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    return buckets.bucket(int(max_new_tokens), self.new_token_buckets, "max_new_tokens",
                          "new_token_buckets")

  def _row_keys(self, seed: int, row_ids: np.ndarray) -> jax.Array:
    row_ids = np.asarray(row_ids, np.uint32)
    # Built inside jit straight into the batch sharding: a multi-process mesh cannot take a
    # device_put of a key array that lives on this process's devices.
    out = None if self.mesh is None else named_sharding(self.mesh, ("batch",), self.rules,
                                                        row_ids.shape)
    return _fold_in_rows(jax.random.key(seed), row_ids, out)

  def _pad_rows(self, seqs: list[list[int]], rows: int, width: int):
    """Left-padded tokens [rows, width] and lengths; padding rows get one token (id 0).

    Left padding ends every prompt at entry `width` of the cache, so the decode loop writes
    each step's tokens at one entry common to all rows (`decode.py`).
    """
    tokens = np.zeros((rows, width), np.int32)
    lengths = np.ones((rows,), np.int32)
    for i, s in enumerate(seqs):
      tokens[i, width - len(s):] = s
      lengths[i] = len(s)
    return tokens, lengths

  def _prefill(self, params: Params, seqs: list[list[int]], extra: int, repeats: int = 1,
               prefix=None, rows: int | None = None, width: int | None = None):
    rows = rows or buckets.batch_rows(len(seqs), self._batch_multiple())
    if width is None:
      longest = max(len(s) for s in seqs)
      width = buckets.bucket(longest, self.prompt_buckets, "the longest prompt length",
                             "prompt_buckets")
    tokens, lengths = self._pad_rows(seqs, rows, width)
    return decode.prefill(
        self.config, params, self._put(tokens, ("batch", "seq")), self._put(lengths, ("batch",)),
        prefix, rules=self.rules, compute_dtype=self.compute_dtype,
        cache_dtype=self._cache_dtype(params), cache_len=width + extra, repeats=repeats,
        scan_layers=self.scan_layers)

  def _run(self, params: Params, rules: SamplingRules, new_tokens: int, admit, num_seqs: int,
           budgets: np.ndarray, prefix=None, *, keep_all: bool, park: bool,
           feed_last: bool, slots: int | None) -> schedule.Decoded:
    """Decodes `num_seqs` sequences admitted by `admit` (`schedule.run`)."""
    rule_arrays = rules.to_arrays(self.config.vocab_size, new_tokens)
    static = dict(rules=self.rules, compute_dtype=self.compute_dtype,
                  scan_layers=self.scan_layers, feed_last=feed_last, keys_ExS=self._cpu_layouts())
    return schedule.run(
        admit=admit, num_seqs=num_seqs, budgets=budgets, slots=slots, keep_all=keep_all,
        park=park,
        phased=self.phased, min_steps=self.min_phase_tokens, new_tokens=new_tokens,
        feed_last=feed_last,
        start=lambda logits, keys, live, budget: decode.start(logits, rule_arrays, keys, live,
                                                              budget, rules=self.rules),
        step=lambda cache, rows, steps: decode.phase(self.config, params, cache, rows,
                                                     rule_arrays, prefix, steps=steps,
                                                     **static),
        repack=functools.partial(decode.repack, rules=self.rules),
        put=lambda x: self._put(x, ("batch",)), batch_multiple=self._batch_multiple())

  @staticmethod
  def _results(decoded: schedule.Decoded):
    """Host lists in result order."""
    return ([list(t) for t in decoded.tokens],
            [np.asarray(lp, np.float32) for lp in decoded.logprobs],
            [FINISH_STOP if s else FINISH_LENGTH for s in decoded.stopped])

  # --- public API -------------------------------------------------------------------------------

  def generate(self, params: Params, prompts: Sequence[Sequence[int]], *,
               max_new_tokens: int | Sequence[int],
               temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0,
               stop_token_ids: Sequence[int] = (), stop_sequences: Sequence[Sequence[int]] = (),
               suppress_token_ids: Sequence[int] = (),
               forced: Sequence[tuple[int, Sequence[int]]] = (), num_samples: int = 1,
               seed: int = 0, keep_cache: bool = False) -> SampleResult:
    """Samples `num_samples` continuations of every prompt.

    Args:
      params: model params (placed on `self.mesh` with `self.rules` when sharded).
      prompts: token id lists of any lengths (each non-empty, at most the largest prompt
        bucket).
      max_new_tokens: budget of generated tokens per row (>= 1): one for every prompt, or a
        sequence of one per prompt (the bucket is that of the largest).
      temperature, top_p, top_k, stop_token_ids, stop_sequences, suppress_token_ids, forced:
        see `SamplingRules`.
      num_samples: continuations per prompt; each prompt is prefilled once and its cache shared.
      seed: PRNG seed (module docstring: row r's randomness depends on (seed, r) only).
      keep_cache: return the KV cache (`SampleResult.cache`) to fork probes from.

    Returns:
      A `SampleResult` with len(prompts) * num_samples rows, prompt-major.
    """
    prompts = buckets.check_sequences(prompts, self.config.vocab_size, "prompt")
    if num_samples < 1:
      raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    per_prompt = np.asarray(max_new_tokens, np.int64).reshape(-1)
    if per_prompt.size == 1:
      per_prompt = np.repeat(per_prompt, len(prompts))
    if per_prompt.size != len(prompts):
      raise ValueError(f"max_new_tokens holds {per_prompt.size} budgets for {len(prompts)} "
                       "prompts; expected one int or one per prompt")
    new_tokens = max(self._new_tokens(b) for b in set(per_prompt.tolist()))
    rules = SamplingRules(temperature, top_p, top_k, stop_token_ids, stop_sequences,
                          suppress_token_ids, forced)
    num_seqs = len(prompts) * num_samples
    slots = self.max_batch_rows
    if slots is not None and num_samples > slots:
      raise ValueError(f"num_samples={num_samples} is more than the max_batch_rows={slots} "
                       "sequences decoded at once; a prompt's samples decode together")
    if keep_cache and slots is not None and num_seqs > slots:
      raise ValueError(f"keep_cache returns one cache of all {num_seqs} sequences, more than "
                       f"max_batch_rows={slots}; raise max_batch_rows or split the call")
    budgets = np.repeat(per_prompt, num_samples)
    with self._context():
      params = decode.params_in_layout(params, self.scan_layers,  # once for every phase
                                       o_EHD=self._cpu_layouts())

    def admit(first: int, max_rows: int | None, steps_for):
      """Whole prompts from sequence `first` on (their samples share one prefill)."""
      p0 = first // num_samples
      count = len(prompts) - p0
      if max_rows is not None:
        count = min(count, max_rows // num_samples)
      if count < 1:
        return None
      group = prompts[p0:p0 + count]
      width = buckets.bucket(max(len(g) for g in group), self.prompt_buckets,
                             "the longest prompt length", "prompt_buckets")
      extra = steps_for(width) if steps_for is not None else 0
      cache, first_logits = self._prefill(params, group, extra, repeats=num_samples,
                                          width=width)
      rows = first_logits.shape[0]
      seq_B = np.full((rows,), -1, np.int64)
      seq_B[:count * num_samples] = first + np.arange(count * num_samples)
      # Padding rows draw from ids past the results (they emit nothing).
      row_ids = np.where(seq_B >= 0, seq_B, num_seqs + np.arange(rows))
      return schedule.Fresh(cache, first_logits, seq_B, self._row_keys(seed, row_ids),
                            self._put(seq_B >= 0, ("batch",)),
                            self._put(np.where(seq_B >= 0, budgets[seq_B], 1).astype(np.int32),
                                      ("batch",)), width)

    with self._context():
      decoded = self._run(params, rules, new_tokens, admit, num_seqs, budgets,
                          keep_all=False, park=keep_cache, feed_last=keep_cache, slots=slots)
    tokens, logprobs, reasons = self._results(decoded)
    return SampleResult(tokens, logprobs, reasons, decoded.cache if keep_cache else None)

  def prefill(self, params: Params, sequences: Sequence[Sequence[int]]) -> KVCache:
    """Runs sequences (e.g. traces to probe) into a KV cache: a trunk for `fork`.

    Row i of the returned cache holds `sequences[i]` (lengths_B[i] = its length); rows past
    len(sequences) are padding.
    """
    sequences = buckets.check_sequences(sequences, self.config.vocab_size, "sequence")
    with self._context():
      cache, _ = self._prefill(params, sequences, 0)
    return cache

  def fork(self, params: Params, trunk: KVCache, probes: Sequence[Probe], *,
           max_new_tokens: int, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0,
           stop_token_ids: Sequence[int] = (), stop_sequences: Sequence[Sequence[int]] = (),
           suppress_token_ids: Sequence[int] = (),
           forced: Sequence[tuple[int, Sequence[int]]] = (), seed: int = 0) -> SampleResult:
    """Decodes probes: continuations of trunk rows cut at boundaries, plus a suffix each.

    Probe i continues `trunk row source`'s tokens [0, boundary) followed by its suffix, reading
    the trunk's cached keys/values in place (`fork.py`): nothing is re-prefilled and the trunk
    is not copied. All probes decode together as one batch. Greedy probes equal `generate` on
    the explicit prompts tokens[:boundary] + suffix; sampled ones too, under the seed
    convention (result row r draws from (seed, r)).

    Args:
      params: model params.
      trunk: a KV cache from `prefill` or `generate(..., keep_cache=True)` (not modified).
      probes: `Probe`s or (source, boundary, suffix, num_samples) tuples.
      max_new_tokens, temperature, top_p, top_k, stop_token_ids, stop_sequences,
        suppress_token_ids, forced, seed: as in `generate`.

    Returns:
      A `SampleResult` with sum(num_samples) rows, probe-major; tokens exclude the suffix.
    """
    probes = [p if isinstance(p, Probe) else Probe(*p) for p in probes]
    layout = arrange(probes, to_host(trunk.lengths_B), self.config.vocab_size)
    new_tokens = self._new_tokens(max_new_tokens)
    width = buckets.bucket(max(len(p.suffix) for p in probes), self.suffix_buckets,
                           "the longest probe suffix", "suffix_buckets")
    rules = SamplingRules(temperature, top_p, top_k, stop_token_ids, stop_sequences,
                          suppress_token_ids, forced)
    n = layout.samples_per_slot  # each probe's suffix is prefilled once for its n samples
    with self._context():
      # A trunk from a sampler with the other layer loop is converted once, here, not by both
      # the suffix prefill and the decode.
      trunk = decode.in_layout(trunk, self.scan_layers)
      params = decode.params_in_layout(params, self.scan_layers,  # once for every phase
                                       o_EHD=self._cpu_layouts())
      prefix = Prefix(trunk, self._put(layout.boundaries_B, ("batch",)))
      slot_prefix = Prefix(trunk, self._put(layout.boundaries_B[::n], ("batch",)))
      num_seqs = len(layout.order)
      budgets = np.full((num_seqs,), int(max_new_tokens), np.int64)

      def admit(first: int, max_rows: int | None, steps_for):
        """Every probe at once, on the trunk's grid (rows stay in their grid slots)."""
        del first, max_rows
        cache, first_logits = self._prefill(params, layout.suffixes[::n], steps_for(width),
                                            repeats=n, prefix=slot_prefix,
                                            rows=len(layout.suffixes) // n, width=width)
        seq_B = np.where(layout.live_B, layout.row_ids_B, -1)
        return schedule.Fresh(
            cache, first_logits, seq_B, self._row_keys(seed, layout.row_ids_B),
            self._put(layout.live_B, ("batch",)),
            self._put(np.full(layout.live_B.shape, int(max_new_tokens), np.int32), ("batch",)),
            width)

      # The probes' own cache is dropped: their last answer token need not be fed.
      decoded = self._run(params, rules, new_tokens, admit, num_seqs, budgets, prefix,
                          keep_all=True, park=False, feed_last=False, slots=None)
    tokens, logprobs, reasons = self._results(decoded)
    return SampleResult(tokens, logprobs, reasons)

  def score(self, params: Params, prompts: Sequence[Sequence[int]],
            targets: Sequence[Sequence[int]], *, temperature: float = 1.0, top_p: float = 1.0,
            top_k: int = 0, suppress_token_ids: Sequence[int] = ()) -> list[np.ndarray]:
    """Log-probs of writing `targets[i]` after `prompts[i]`, by teacher forcing (`score.py`).

    One forward pass over prompt + target, no decoding. Entry a of result i is the log-prob
    that sampling with these rules draws targets[i][a] after prompts[i] + targets[i][:a]:
    the distribution after temperature, suppression and top-k/top-p truncation
    (`rules.drawn_logprob`; -inf for a token the rules never draw), not the log-prob
    convention of `generate`. exp(sum) is the probability that sampling writes the target.

    Args:
      params: model params.
      prompts: non-empty contexts.
      targets: one non-empty continuation per prompt.
      temperature, top_p, top_k, suppress_token_ids: the sampling rules (`SamplingRules`).

    Returns:
      f32 arrays, one per prompt, aligned with `targets`.
    """
    return score.score_prompts(self, params, prompts, targets, temperature=temperature,
                               top_p=top_p, top_k=top_k, suppress_token_ids=suppress_token_ids)

  def score_forks(self, params: Params, trunk: KVCache, forks: Sequence[Probe],
                  targets: Sequence[Sequence[int]], *, temperature: float = 1.0,
                  top_p: float = 1.0, top_k: int = 0,
                  suppress_token_ids: Sequence[int] = ()) -> list[np.ndarray]:
    """`score` for forks of a trunk: contexts trunk row tokens[:boundary] + suffix.

    Fork i's context is read from `trunk` in place as `fork` reads it (nothing is
    re-prefilled); all forks are scored in one forward pass. Equal to `score` on the explicit
    prompts tokens[:boundary] + suffix.

    Args:
      params: model params.
      trunk: a KV cache from `prefill` or `generate(..., keep_cache=True)` (not modified).
      forks: `Probe`s or (source, boundary, suffix) tuples; `num_samples` is not read.
      targets: one non-empty continuation per fork, scored after its suffix.
      temperature, top_p, top_k, suppress_token_ids: the sampling rules (`SamplingRules`).

    Returns:
      f32 arrays, one per fork, aligned with `targets`.
    """
    return score.score_forks(self, params, trunk, forks, targets, temperature=temperature,
                             top_p=top_p, top_k=top_k, suppress_token_ids=suppress_token_ids)


@functools.partial(jax.jit, static_argnames="sharding")
def _fold_in_rows(base: jax.Array, row_ids_B: jax.Array, sharding) -> jax.Array:
  """Per-row keys fold_in(base, r), laid out with `sharding` (None: where jit puts them)."""
  keys = jax.vmap(jax.random.fold_in, (None, 0))(base, row_ids_B)
  return keys if sharding is None else jax.lax.with_sharding_constraint(keys, sharding)


def generate(config: ModelConfig, params: Params, prompts: Sequence[Sequence[int]], *,
             max_new_tokens: int, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0,
             stop_token_ids: Sequence[int] = (), num_samples: int = 1, seed: int = 0,
             **kwargs) -> SampleResult:
  """`Sampler(config).generate(...)`: one-off generation with default buckets.

  Compiled programs are cached per (config, shapes), so repeated calls do not recompile.
  `kwargs` are the other `Sampler.generate` arguments (stop_sequences, suppress_token_ids,
  forced, keep_cache).
  """
  return Sampler(config).generate(
      params, prompts, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
      top_k=top_k, stop_token_ids=stop_token_ids, num_samples=num_samples, seed=seed, **kwargs)


def prefill(config: ModelConfig, params: Params, sequences: Sequence[Sequence[int]]) -> KVCache:
  """`Sampler(config).prefill(...)`: a trunk cache holding `sequences`, for `fork`."""
  return Sampler(config).prefill(params, sequences)


def fork(config: ModelConfig, params: Params, trunk: KVCache, probes: Sequence[Probe], *,
         max_new_tokens: int, **kwargs) -> SampleResult:
  """`Sampler(config).fork(...)`: decodes probes forked from a trunk cache in place."""
  return Sampler(config).fork(params, trunk, probes, max_new_tokens=max_new_tokens, **kwargs)
