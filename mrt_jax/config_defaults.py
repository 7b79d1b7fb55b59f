"""Shared blocks of the experiment configs in `configs/` (ml-collections; method: docs/method.md).

Each config file composes these blocks and changes what differs. Paper symbols: G samples per
prompt, α progress weight, β KL weight, ε clip range, m probes per boundary, K max blocks.
Numbers follow the paper settings for DeepSeek-R1-Distill-Qwen (Qu et al. 2025) unless a comment
says otherwise.
"""

from __future__ import annotations

from ml_collections import ConfigDict, config_dict

VARIANTS = ("cpu",)
# Where the CPU demo (configs/demo_cpu.py) writes its tiny checkpoint, tokenizer and problems;
# the `cpu` variants of the built-in configs read them from there (`use_demo`).
DEMO_DIR = "/tmp/mrt_jax/demo_cpu"

# Forced termination suffix of the meta-prover μ: ends the thinking and asks for the answer.
TERMINATION_SUFFIX = ("\n\nTime is up. Given the time I've spent and the approaches I've tried, "
                      "I should stop thinking and now write the final answer.\n</think>\n\n")
RESTART_MARKERS = ("Wait", "But wait", "Alternatively", "Is there another way",
                   "But let me double-check", "But hold on")


def base(name: str, model_path: str) -> ConfigDict:
  """Fields every experiment has: run, model, data, rollouts, probes, segmentation, mesh, eval."""
  c = ConfigDict()
  c.name = name  # run name; also the subdirectory of workdir
  c.seed = 0  # seeds data order, rollout and probe sampling, and any random init
  c.workdir = f"workdir/{name}"  # checkpoints, metrics and eval outputs go here
  # Modules imported before the run (they register verifiers): names or .py paths, looked up in
  # the config file's folder first (mrt_jax.plugins).
  c.plugins = ()  # e.g. ("my_task",) for my_task.py next to the config file

  c.model = ConfigDict()  # the policy π (also π_ref and the meta-prover μ)
  c.model.path = model_path  # local Hugging Face checkpoint dir (config.json, *.safetensors)
  c.model.tokenizer_path = model_path  # tokenizer dir; R1-Distill ships it with the weights
  c.model.dtype = "bfloat16"  # params and compute dtype (paper: bf16)

  c.data = ConfigDict()  # training problems x with reference answers
  c.data.path = "data/train.jsonl"  # training problems, one JSON object per line
  c.data.problem_field = "problem"  # field holding the problem text x
  c.data.answer_field = "answer"  # field holding the reference answer the verifier checks
  c.data.max_prompt_len = 4096  # tokens of the rendered prompt x (paper: 4096)
  c.data.thinking_opener = "<think>\n"  # ends the generation prompt (unless the template has it)
  c.data.prompt_template = "{problem}"  # user message; "{problem}" is replaced by the problem
  c.data.system = config_dict.placeholder(str)  # system prompt; unset (None) = no system turn
  c.data.shuffle = True  # shuffle the problems each epoch (seeded by `seed`)
  c.data.num_epochs = config_dict.placeholder(int)  # passes over the data; unset = repeat forever
  c.data.split = "train"  # split of a `datasets` directory (ignored for jsonl/parquet files)

  c.reward = ConfigDict()  # the outcome verifier r(x, z) ∈ {0, 1}
  c.reward.verifier = "math"  # registered verifier (mrt_jax.rewards): "math", "elimination", ...
  # A step whose verifier calls (rollouts and probes) fail (raise, bad value, timeout) at a
  # higher rate stops the run with the first failure's traceback; 1.0 never stops.
  c.reward.max_error_rate = 0.5  # fraction of one step's verifier calls
  c.reward.num_workers = 0  # verifier worker processes per host; 0 = this machine's CPU count
  c.reward.timeout_s = 10.0  # seconds one answer check may run before it scores 0 (a timeout)

  c.rollout = ConfigDict()  # sampling of training traces z
  c.rollout.num_generations = 4  # G: traces sampled per prompt, one advantage group
  c.rollout.max_completion_len = 16384  # tokens per trace (paper: 16384; 24576 in one table)
  c.rollout.temperature = 0.9  # training rollouts (paper: 0.9)
  c.rollout.top_p = 1.0  # no nucleus truncation for training rollouts

  c.probe = ConfigDict()  # meta-prover μ probes that estimate J_j at each boundary b_j
  c.probe.num_probes = 4  # m: meta-prover μ samples per boundary; J_j = mean reward over them
  c.probe.temperature = 0.6  # μ sampling temperature (paper: 0.6)
  c.probe.top_p = 0.95  # μ nucleus (paper: 0.95)
  c.probe.max_answer_len = 512  # tokens μ may write after the termination suffix
  c.probe.termination_suffix = TERMINATION_SUFFIX  # appended at boundary b_j to force an answer
  # How J_j is estimated (mrt_jax.mrt.meta_prover): "sampled" = mean verdict of m sampled answers
  # (the paper's); "likelihood" = P(μ writes the reference answer), by teacher forcing, no noise;
  # "task" = the task's own success function of the thinking text (probe.task_prover), no model
  c.probe.estimator = "sampled"  # see the three lines above
  # The task prover of estimator "task" (probe or eval.j_estimator): a name registered with
  # mrt_jax.rewards.register_task_prover, e.g. "elimination" (the demo puzzle's exact J)
  c.probe.task_prover = ""  # see the two lines above
  # The reference answer μ should write after the suffix (likelihood only): str.format template
  # of the record's answer (data.answer_field); "\\boxed{{{answer}}}" renders 7 as \boxed{7}
  c.probe.answer_template = "\\boxed{{{answer}}}"  # see the two lines above
  # whose forced answers J_j measures: "" = the policy being trained (the paper's μ, which RL
  # changes with the policy); a checkpoint of the same architecture (HF dir or
  # <workdir>/checkpoints), e.g. model.path = the frozen warm start, so that progress prices the
  # traces alone; it prefills each step's rollouts into its own KV cache
  c.probe.meta_prover = ""  # see the lines above

  c.segment = ConfigDict()  # splitting the thinking into blocks z_1..z_K (docs/method.md)
  c.segment.method = "paragraph"  # restart-marker paragraphs; "fixed_chunk" for models without
  c.segment.restart_markers = RESTART_MARKERS  # a paragraph starting with one opens a block
  c.segment.min_paragraphs = 3  # a block holds at least this many paragraphs before a restart
  c.segment.episodes_per_block = 1  # consecutive episodes grouped into one block z_j
  c.segment.max_blocks = 6  # K: at most this many blocks (6 as in the MRT authors' recipe)
  c.segment.chunk_tokens = 1024  # block length for method "fixed_chunk"
  c.segment.end_think = "</think>"  # end of thinking; decoding must keep it (a non-special token)

  c.mesh = ConfigDict()  # device mesh axes (`data`, `fsdp`, `tensor`)
  c.mesh.data = 1  # data-parallel replicas; data * fsdp * tensor == jax.device_count()
  c.mesh.fsdp = 8  # params, grads and optimizer state sharded over this axis
  c.mesh.tensor = 4  # attention heads and FFN sharded over this axis (divides K kv heads)

  c.eval = ConfigDict()  # evaluation: pass@k, maj@k, J(c) curves and regret
  c.eval.num_samples = 16  # n: traces per problem for pass@1 (mean), maj@k and pass@k
  c.eval.temperature = 0.6  # paper evaluation: 0.6
  c.eval.top_p = 0.95  # paper evaluation: 0.95
  c.eval.budgets = (2048, 4096, 8192, 16384)  # thinking budgets c where J(c) is measured
  # evaluation problems (a file like data.path's); "" = the held-out split of data.path below
  c.eval.data_path = ""  # see the line above
  # with eval.data_path "": the share of data.path's problems (chosen by a hash of each problem's
  # text) held out of training and evaluated instead, so no run evaluates on its training data
  c.eval.holdout_fraction = 0.1  # see the two lines above
  c.eval.num_probes = 4  # m: forced-answer probes per budget cut when measuring J(c)
  c.eval.num_problems = 0  # cap on evaluated problems; 0 = all
  c.eval.extrapolation_budgets = (32768,)  # beyond the trained budget: suppress </think>, "Wait"
  c.eval.max_waits = 4  # "Wait" insertions per trace when extrapolating
  c.eval.problems_per_batch = 8  # problems sampled together (bounds the KV cache)
  c.eval.num_resamples = 1000  # bootstrap resamples of the confidence intervals
  c.eval.k_values = ()  # k of pass@k and maj@k; () = powers of 2 up to eval.num_samples
  c.eval.max_new_tokens = 0  # tokens sampled per trace; 0 = rollout.max_completion_len
  c.eval.wait_text = "Wait"  # text appended to extend the thinking when extrapolating
  c.eval.j_estimator = "sampled"  # J(c) at cuts: "sampled" (m probes), "likelihood" or "task"
  # whose forced answers J(c) measures: "" = the evaluated policy's own (the paper's μ); a
  # checkpoint of the same architecture (HF dir or <workdir>/checkpoints), e.g. the warm start,
  # = a fixed meta-prover, so that curves of several policies differ by their traces only
  c.eval.meta_prover = ""  # see the lines above
  return c


def optimizer(learning_rate: float) -> ConfigDict:
  """AdamW with linear warm-up and cosine decay (paper: lr 1e-6, warm-up 0.1, wd 0.01)."""
  c = ConfigDict()
  c.learning_rate = learning_rate  # peak learning rate
  c.schedule = "cosine"  # decay after warm-up, to 0 at train.total_steps
  c.warmup_ratio = 0.1  # fraction of train.total_steps spent warming up linearly
  c.weight_decay = 0.01  # AdamW decoupled weight decay
  c.max_grad_norm = 1.0  # global-norm gradient clipping (TRL/verl default)
  return c


def train(total_steps: int) -> ConfigDict:
  """Batching, length of the run, checkpointing and failure handling."""
  c = ConfigDict()
  c.total_steps = total_steps  # optimizer steps
  c.global_batch_prompts = 256  # prompts per step (paper: 256), G traces each
  c.micro_batch_prompts = 8  # prompts per accumulation micro-batch; divides a mini-batch
  c.num_updates = 1  # μ: passes over each batch (ratios move off 1 after the first)
  c.mini_batches = 1  # optimizer updates per pass, each on whole groups of the batch
  c.checkpoint_every = 50  # steps between checkpoints
  c.keep_checkpoints = 3  # newest checkpoints kept in workdir/checkpoints; older ones are deleted
  c.sample_every = 10  # steps between rollout texts written to TensorBoard ("samples")
  c.log_every = 1  # steps between metric lines
  c.max_bad_steps = 5  # stop after this many NaN/inf steps in a row (each one is skipped)
  c.eval_every = 0  # run mrt_jax.evaluate at step 0, every this many steps and at the end; 0 = off
  # Warn when this many steps in a row have all-zero advantages (every group's outcomes equal,
  # no progress): their policy-gradient update is exactly zero. 0 = never warn.
  c.zero_advantage_warn_steps = 3  # consecutive steps
  return c


def rl(c: ConfigDict, estimator: str, alpha: float) -> ConfigDict:
  """Adds the policy-gradient blocks: advantage estimator and loss."""
  c.advantage = ConfigDict()  # per-token advantages A_{i,t}
  # "mrt", "grpo", "termination" / "termination_dense" (r − J_0 / r − J_{j−1}: the MRT authors'
  # released recipe), "mrt_prefix", ... (mrt_jax.mrt.ESTIMATORS)
  c.advantage.estimator = estimator  # see the two lines above
  c.advantage.alpha = alpha  # α: weight of progress p_j in A_{i,t} = A^out_i + α·p_{i,j}
  c.advantage.outcome_norm = "grpo"  # A^out: "grpo" (r − mean)/(std + ε), "dr_grpo" (no std), "rloo"
  # p̃ in A = A^out + α·p̃, mrt only: "none" (p, the paper's), "center" (p − the group's mean
  # block progress, so zero-progress blocks cost), "standardize" ((p − mean) / (std + ε)),
  # "flat_price" (a flat block, p <= flat_threshold, of a trace that ends right is charged the
  # group's mean block progress; other blocks keep p) or "flat_price_stop" (the same, but a flat
  # block's first token, the decision to go on thinking, only when nothing after it progresses)
  c.advantage.progress_norm = "none"  # see the five lines above
  c.advantage.flat_threshold = 0.02  # τ of the flat_price norms: a block with p <= τ is flat
  # mrt only: the last block of a completion that never closes its thinking (no end tag):
  # "progress" (credited with the progress measured at the completion's end) or "outcome" (its
  # tokens get the outcome advantage alone, like an answer segment: with no end boundary, the
  # block made no progress, and no flat price)
  c.advantage.open_block = "progress"  # see the four lines above
  c.advantage.eps = 1e-6  # ε of the GRPO std normalization
  c.advantage.std = "unbiased"  # group std estimator: "unbiased" (n − 1) or "biased" (n)

  c.loss = ConfigDict()  # clipped policy-gradient loss with a KL penalty
  c.loss.policy_loss = "clip"  # "clip" (PPO/GRPO), "dual_clip" or "gspo" (sequence ratio)
  c.loss.clip_eps = 0.2  # ε: PPO ratio clip range (paper: 0.2); ε_low
  c.loss.clip_eps_high = 0.2  # ε_high of clip-higher (DAPO uses 0.28; paper: 0.2)
  c.loss.kl_beta = 0.04  # β: weight of KL(π ‖ π_ref) (paper: 0.04)
  c.loss.kl_estimator = "k3"  # Schulman's k3 estimator (paper)
  c.loss.aggregation = "token_mean"  # mean over all tokens of the batch (paper: token-level)
  c.loss.entropy_coef = 0.0  # entropy bonus weight (entropy is logged either way)
  c.loss.tis_cap = 0.0  # truncated importance-sampling cap C on π_old/π_sampler; 0 = off
  # λ: each step also trains the meta-prover μ by maximum likelihood of an answer after the
  # termination suffix at one random boundary per rollout, weighted λ against the policy loss,
  # so RL does not erode the J that progress reads (mrt_jax.train.anchor). 0 = off (the paper)
  c.loss.answer_nll_coef = 0.0  # see the three lines above
  # those answers: "warm_start" (sampled from the frozen warm start at the same cut: μ stays the
  # warm start's) or "reference" (the record's answer: μ also learns to answer from the prompt)
  c.loss.answer_target = "warm_start"  # see the two lines above
  c.optimizer = optimizer(learning_rate=1e-6)  # paper: lr 1e-6
  c.train = train(total_steps=1000)  # run length and batching
  return c


def star() -> ConfigDict:
  """MRT-STaR: every step samples G traces per prompt, probes them, keeps the best correct one
  per group and takes one SFT step on the kept traces (an online round per step)."""
  c = ConfigDict()
  # per group, the correct trace whose J curve has the least normalized regret (the area above
  # it, as evaluation measures it); ties: fewer tokens. "any_correct": the shortest correct one
  c.selection = "min_regret"  # see the two lines above
  return c


def finish(c: ConfigDict, arg: str | None, *, demo_assets: bool = False) -> ConfigDict:
  """Applies the variant named by `--config=configs/x.py:<arg>`.

  Args:
    c: the full-size config.
    arg: None for the full run, or "cpu" for a tiny local run of the same pipeline (`tiny`).
    demo_assets: with "cpu", also run on the CPU demo's task and assets (`use_demo`): the
      built-in paper configs, whose models are too large for a CPU. A config of another task
      keeps its own model, data and verifier.

  Returns:
    The config of that variant.

  Raises:
    ValueError: `arg` names no variant.
  """
  if arg is None:
    return c
  if arg not in VARIANTS:
    raise ValueError(f"unknown config variant {arg!r} of {c.name!r}; expected one of {VARIANTS}")
  c = tiny(c)
  return use_demo(c) if demo_assets else c


def tiny(c: ConfigDict) -> ConfigDict:
  """Sizes of a tiny run on one CPU device; the task (model, data, verifier) is left alone."""
  c.workdir = f"/tmp/mrt_jax/{c.name}"  # keep tiny runs out of the real workdir
  c.model.dtype = "float32"  # CPUs have no fast bf16
  c.data.max_prompt_len = 64  # tiny prompts
  c.rollout.num_generations = 2  # G
  c.rollout.max_completion_len = 192  # short traces (the demo task's are ~120-170 tokens)
  c.probe.num_probes = 2  # m
  c.probe.max_answer_len = 8  # short answers
  c.segment.chunk_tokens = 16  # tiny fixed chunks
  c.mesh.data = 1  # one CPU device
  c.mesh.fsdp = 1  # one CPU device
  c.mesh.tensor = 1  # one CPU device
  c.eval.num_samples = 2  # n
  c.eval.budgets = (32, 64, 128, 192)  # up to max_completion_len
  c.eval.extrapolation_budgets = (384,)  # twice the trained budget
  c.eval.num_problems = 16  # a quick evaluation
  c.eval.num_probes = 2  # m of the evaluation's budget-forced probes
  c.eval.num_resamples = 200  # quick bootstrap
  c.train.total_steps = 2  # a smoke run
  c.train.global_batch_prompts = 4  # prompts per step
  c.train.micro_batch_prompts = 2  # two accumulation micro-batches
  c.train.checkpoint_every = 1  # exercise checkpointing every step
  return c


def use_demo(c: ConfigDict) -> ConfigDict:
  """Runs `c` on the CPU demo's task: its problems, tokenizer and warm-started tiny model, built
  under DEMO_DIR on first use (the `demo` block asks `mrt_jax.launch` to build them)."""
  c.model.path = f"{DEMO_DIR}/model"  # the tiny checkpoint the CPU demo builds
  c.model.tokenizer_path = f"{DEMO_DIR}/tokenizer"  # the demo's tiny BPE tokenizer
  c.data.path = f"{DEMO_DIR}/train.jsonl"  # synthetic problems the CPU demo writes
  c.reward.verifier = "elimination"  # the demo's synthetic task (mrt_jax.data.elimination)
  c.demo = demo()  # assets built under DEMO_DIR on first use
  return c


def demo() -> ConfigDict:
  """The CPU demo's assets: synthetic task, tiny tokenizer, tiny model and its SFT warm start."""
  c = ConfigDict()
  c.seed = 0  # seeds the problems, the tokenizer corpus, the init and the SFT (not the runs)
  c.num_problems = 256  # synthetic elimination problems written to data.path (RL prompts)
  c.num_test_problems = 128  # held-out problems written to eval.data_path (none seen in SFT or RL)
  c.num_candidates = 6  # letters per puzzle; a blind forced answer is right w.p. 1/6 (J_0)
  c.num_clues = 3  # clues per puzzle; each useful block checks one and strikes letters
  c.indirect_prob = 0.0  # chance a clue names a letter by a neighbour ("after A"); 0: easy copies
  c.clue_order = "random"  # the order the warm start's traces check the clues: "random" or "prompt"
  c.waste_prob = 0.5  # chance of a wasteful block (re-checking a used clue) after each useful one
  c.vocab_size = 384  # tiny byte-level BPE tokenizer with R1-Distill special tokens
  c.hidden_size = 128  # D of the tiny Qwen2-style model (0.35M parameters with the rest)
  c.intermediate_size = 256  # F: small; copying clues from the prompt is attention's job
  c.num_layers = 2  # L
  c.num_heads = 4  # H
  c.num_kv_heads = 2  # kv heads of the cache (GQA), not the block count K
  c.rope_theta = 500.0  # short sequences: faster rotations resolve nearby positions better
  c.sft_trace_steps = 500  # warm-start SFT steps on whole traces (useful and wasteful blocks)
  c.sft_answer_steps = 200  # then SFT steps, 2 in 3 on answers (μ's forced ones), 1 on traces
  c.sft_problems = 512  # problems whose traces and answers the warm start sees
  c.sft_traces_per_problem = 1  # traces per SFT problem, each with its own clue order and waste
  c.sft_clue_weight = 8.0  # SFT loss weight of the trace tokens that copy a clue (1: unweighted)
  # SFT loss weight of the tokens after each "Left" line that choose another block or stopping
  # (see mrt_jax.train.demo.trace_weights; 1: unweighted, the demo's measured recipe)
  c.sft_decision_weight = 1.0  # see the two lines above
  c.sft_batch_size = 16  # sequences per SFT step
  c.sft_learning_rate = 3e-3  # peak SFT learning rate (tiny model, few steps)
  c.sft_weight_decay = 0.0  # the SFT's AdamW weight decay
  # SFT candidates (init and batch-order seeds) to choose the warm start among: a tiny model's
  # SFT outcome varies by seed; the best check pass@1 is kept (mrt_jax.train.warm_start_check)
  c.num_warm_starts = 2  # see the two lines above; 1 = no choice
  c.check_problems = 32  # RL prompts unseen by the SFT that the choice is checked on
  c.check_samples = 2  # samples per check problem (eval.temperature, eval.top_p)
  return c
