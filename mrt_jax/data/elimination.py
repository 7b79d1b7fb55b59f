"""An elimination puzzle with graded progress: the synthetic task of the CPU demo.

N candidate letters (A, B, ...), one hidden; each of C clues strikes some wrong candidates,
directly ("E") or through a one-step lookup ("after A" strikes B, "before C" strikes B). A
problem reads "One of 6 letters is hidden.", then a line "Clue: not after A E." per clue. A
trace is a sequence of blocks, each checking one clue in three paragraphs:

  Wait, clue: not after A E.
  <blank line>
  Strike B E.
  <blank line>
  Left:A,b,C,D,e,F.

A useful block checks a new clue and strikes its candidates; a wasteful block re-checks a clue
already used and strikes nothing new. A forced answer picks uniformly among the candidates
left, so the meta-prover's success J_j = 1 / |left after block j| rises block by block along
useful blocks and stays flat along wasteful ones (`oracle_success`). Every block starts with
"Wait" and has 3 paragraphs, so the default `paragraph` segmenter (restart markers,
min_paragraphs=3) puts a boundary exactly before each block. The completion ends with
"</think>" and "\\boxed{X}", graded by the `elimination` verifier.

Why the text looks like this: a tiny model (0.35M parameters, minutes of CPU training) has to
learn it. Clues carry no number: a block names its clue by copying it, so choosing a clue is
choosing its first letter, and with direct clues (`indirect_prob` = 0) every later letter is
found in the prompt by its predecessor alone (an induction head; each wrong letter occurs in
one clue only, and the first line names no letter; the warm start weights these copying
tokens, `CLUE_COPY_RE`, in its SFT loss). The "Left" line lists every candidate,
struck ones in lower case ("b": struck), so each of its tokens is decided locally (is this
letter struck?) and a struck letter never reads like one still in play.

Problems are records (dicts, JSON-ready): "problem" (text), "answer" (a letter), "candidates"
(str), "clues" (list of clue item lists, e.g. [["after A", "E"], ["C"]]), "strikes" (the letters
each clue strikes), "id".
"""

from __future__ import annotations

import dataclasses
import re
import string
from typing import Any, NamedTuple, Sequence

import numpy as np

from mrt_jax.config_defaults import TERMINATION_SUFFIX

# Closes the thinking of a natural (unforced) trace. Like the blank line before each "Wait", the
# one before "</think>" starts what follows it (the segmenter cuts at a separator's first
# token), so the choice between stopping (the answer segment) and re-checking ("Wait", a block of
# zero progress) lies in the segment it decides, and MRT's progress term credits neither choice
# with the progress of the block before.
THINK_END = "\n\n</think>\n\n"
_CLUE_RE = re.compile(r"^Wait, clue: (.*)$", re.MULTILINE)
# Group 1: a block's "Left" mask ("A,b,C"), without the closing period.
_LEFT_RE = re.compile(r"^Left:([^\n]*)\.$", re.MULTILINE)
# Group 1: the part of a block's clue line copied from the prompt (letters and period).
CLUE_COPY_RE = re.compile(r"^Wait, clue: not( [^\n]*)$", re.MULTILINE)
# Group 1: what follows a block's "Left" line up to the first character of the next block's
# "Wait" or of "</think>": the tokens that choose between checking another clue and stopping.
DECISION_RE = re.compile(r"^Left:[^\n]*\.(\s+\S)", re.MULTILINE)
# Seed-sequence key of the corpus's trace sampling, apart from the problem keys [seed, index].
_CORPUS_TRACES = 2**32 - 1

Record = dict[str, Any]


CLUE_ORDERS = ("random", "prompt")


@dataclasses.dataclass(frozen=True)
class EliminationConfig:
  """Size of the puzzles and the mix of trace blocks."""
  num_candidates: int = 6    # N letters A, B, ...; a random forced answer is right w.p. 1/N
  num_clues: int = 3         # C clues; the N-1 wrong letters are split among them
  indirect_prob: float = 0.5  # chance a struck letter is named through "after"/"before"
  waste_prob: float = 0.3    # chance that a wasteful block follows each useful block
  clue_order: str = "random"  # the order traces check the clues: "random" or "prompt" (as listed)

  def __post_init__(self):
    if not 2 <= self.num_candidates <= 26:
      raise ValueError(f"EliminationConfig.num_candidates={self.num_candidates}: expected 2..26")
    if not 1 <= self.num_clues <= self.num_candidates - 1:
      raise ValueError(f"EliminationConfig.num_clues={self.num_clues}: expected 1.."
                       f"{self.num_candidates - 1} (each clue strikes at least one letter)")
    for name in ("indirect_prob", "waste_prob"):
      if not 0.0 <= getattr(self, name) <= 1.0:
        raise ValueError(f"EliminationConfig.{name}={getattr(self, name)}: expected in [0, 1]")
    if self.clue_order not in CLUE_ORDERS:
      raise ValueError(f"EliminationConfig.clue_order={self.clue_order!r}: expected one of "
                       f"{CLUE_ORDERS}")


def _item(letter: str, candidates: str, rng: np.random.Generator, indirect_prob: float) -> str:
  """How a clue names a struck letter: itself, or "after"/"before" a neighbouring candidate."""
  i = candidates.index(letter)
  forms = [letter]
  if rng.random() < indirect_prob:
    forms = ([f"after {candidates[i - 1]}"] if i > 0 else []) + (
        [f"before {candidates[i + 1]}"] if i + 1 < len(candidates) else [])
  return forms[rng.integers(len(forms))]


def clue_text(items: Sequence[str]) -> str:
  """"not after A E." for the items ["after A", "E"]."""
  return "not " + " ".join(items) + "."


def generate_problem(seed: int, index: int, config: EliminationConfig = EliminationConfig()
                     ) -> Record:
  """Problem `index` of the seeded stream (independent of how many others are generated).

  Args:
    seed: stream seed.
    index: problem number; also the record's "id".
    config: puzzle size.

  Returns:
    The problem record.
  """
  rng = np.random.default_rng([seed, index])
  candidates = string.ascii_uppercase[:config.num_candidates]
  answer = candidates[rng.integers(len(candidates))]
  wrong = [c for c in candidates if c != answer]
  order = [wrong[i] for i in rng.permutation(len(wrong))]
  # Cut the shuffled wrong letters into num_clues non-empty groups at distinct cut points.
  cuts = sorted(rng.choice(np.arange(1, len(wrong)), config.num_clues - 1, replace=False))
  strikes = [sorted(g) for g in np.split(np.array(order), cuts)]
  clues = [[_item(str(c), candidates, rng, config.indirect_prob) for c in g] for g in strikes]
  lines = [f"One of {len(candidates)} letters is hidden."]
  lines += [f"Clue: {clue_text(items)}" for items in clues]
  lines.append("Which letter is hidden?")
  return {"id": index, "problem": "\n".join(lines), "answer": answer, "candidates": candidates,
          "clues": clues, "strikes": [[str(c) for c in g] for g in strikes]}


def generate_problems(num: int, seed: int, config: EliminationConfig = EliminationConfig()
                      ) -> list[Record]:
  """Problems 0..num-1 of the seeded stream (deterministic)."""
  return [generate_problem(seed, i, config) for i in range(num)]


def remaining(problem: Record, clue_order: Sequence[int]) -> str:
  """Candidates left after checking the clues `clue_order` (0-based, repeats allowed)."""
  struck = {c for k in clue_order for c in problem["strikes"][k]}
  return "".join(c for c in problem["candidates"] if c not in struck)


def oracle_success(problem: Record, clue_order: Sequence[int]) -> np.ndarray:
  """Exact meta-prover success J_0..J_K along a trace checking `clue_order`.

  The forced answer is uniform over the candidates left, so J_j = 1 / |left after j blocks|.

  Returns:
    float64 [K+1], J_0 = 1/N; J_K = 1 once every clue is checked.
  """
  return np.array([1.0 / len(remaining(problem, clue_order[:j]))
                   for j in range(len(clue_order) + 1)])


def block_text(problem: Record, clue_order: Sequence[int], j: int) -> str:
  """Block j (0-based) of a trace: check clue clue_order[j], strike, list what is left."""
  k = clue_order[j]
  struck = " ".join(problem["strikes"][k])
  return (f"Wait, clue: {clue_text(problem['clues'][k])}\n\nStrike {struck}.\n\n"
          f"Left:{left_mask(problem, remaining(problem, clue_order[:j + 1]))}.")


def left_mask(problem: Record, left: str) -> str:
  """"A,b,C" when "AC" are left of "ABC": every candidate, struck ones in lower case."""
  return ",".join(c if c in left else c.lower() for c in problem["candidates"])


class Completion(NamedTuple):
  """A completion in three parts, tokenized separately to match how probes are built.

  thinking: the blocks, joined by blank lines (a forced prefix ends with the last block's text,
    before its blank line, as the token boundary b_j does); closing: `THINK_END` or the
    termination suffix (each starts with the blank line); answer: "\\boxed{X}".
  """
  thinking: str
  closing: str
  answer: str

  @property
  def text(self) -> str:
    return self.thinking + self.closing + self.answer


def sample_clue_order(problem: Record, rng: np.random.Generator,
                      config: EliminationConfig = EliminationConfig()) -> list[int]:
  """All clues, in random order or as the prompt lists them (`config.clue_order`), each useful
  block followed w.p. waste_prob by a re-check of a clue already checked."""
  order: list[int] = []
  num_clues = len(problem["clues"])
  for k in rng.permutation(num_clues) if config.clue_order == "random" else range(num_clues):
    order.append(int(k))
    if rng.random() < config.waste_prob:
      order.append(order[rng.integers(len(order))])
  return order


def trace_completion(problem: Record, clue_order: Sequence[int]) -> Completion:
  """The natural completion: every block, "</think>", then the letter left (or the first left)."""
  blocks = [block_text(problem, clue_order, j) for j in range(len(clue_order))]
  return Completion("\n\n".join(blocks), THINK_END,
                    f"\\boxed{{{remaining(problem, clue_order)[0]}}}")


def forced_completion(problem: Record, clue_order: Sequence[int], num_blocks: int,
                      rng: np.random.Generator, termination_suffix: str = TERMINATION_SUFFIX
                      ) -> Completion:
  """A meta-prover example: the first `num_blocks` blocks, the suffix, a guess among those left.

  The guess is uniform over the candidates left, so its expected reward is
  `oracle_success(problem, clue_order)[num_blocks]`.
  """
  thinking = "\n\n".join(block_text(problem, clue_order, j) for j in range(num_blocks))
  left = remaining(problem, clue_order[:num_blocks])
  return Completion(thinking, termination_suffix, f"\\boxed{{{left[rng.integers(len(left))]}}}")


def checked_clues(thinking: str, problem: Record) -> list[int]:
  """Clues (0-based) a generated trace checks, in order, read from its "Wait, clue: ..." lines.

  Lines that copy no clue of the problem exactly are ignored. With `oracle_success` this gives
  the exact J along a model's own trace (when the model strikes what the clue says).
  """
  index = {clue_text(items): k for k, items in enumerate(problem["clues"])}
  return [index[line] for line in _CLUE_RE.findall(thinking) if line in index]


def last_left(thinking: str, problem: Record) -> str | None:
  """The candidates a generated trace's last well-formed "Left" line keeps ("AC" for
  "Left:A,b,C."), or None when it has none (nothing struck yet).

  Well-formed: every candidate once, in order, each as itself (left) or in lower case (struck),
  as `left_mask` writes it; other "Left" lines are skipped. Unlike `checked_clues`, this reads
  what the trace concluded, right or wrong: a line that strikes the hidden letter keeps it out.
  """
  candidates = problem["candidates"]
  for mask in reversed(_LEFT_RE.findall(thinking)):
    items = mask.split(",")
    if len(items) == len(candidates) and all(i in (c, c.lower()) for i, c in
                                             zip(items, candidates)):
      return "".join(i for i in items if i.isupper())
  return None


def tokenizer_corpus(num_problems: int = 200, seed: int = 0,
                     config: EliminationConfig = EliminationConfig(),
                     termination_suffix: str = TERMINATION_SUFFIX) -> list[str]:
  """Texts to train the task's tiny BPE tokenizer on (`build_tiny_tokenizer`).

  Problems, natural and forced completions, and the termination suffix.
  """
  rng = np.random.default_rng([seed, _CORPUS_TRACES])
  texts = [termination_suffix]
  for problem in generate_problems(num_problems, seed, config):
    order = sample_clue_order(problem, rng, config)
    texts += [problem["problem"], trace_completion(problem, order).text,
              forced_completion(problem, order, int(rng.integers(len(order) + 1)), rng,
                                termination_suffix).text]
  return texts
