"""Verifier throughput: math-verify calls per second, one process against the worker pool.

  python benchmarks/verifier.py                  # 2000 calls, pool of os.cpu_count() workers
  python benchmarks/verifier.py --calls=200 --workers=2

A 7B MRT step makes up to ~25k answer checks (1024 rollouts plus their probes' forced answers),
so the pool (`reward.num_workers`, default one worker per CPU) must keep up. The table holds
real-looking completions: thinking, then a final answer in the forms R1-style models write
(boxed integers, fractions, radicals, intervals, tuples, text, unboxed sentences, wrong answers).
Both paths grade the same `calls` items with the registered `math` verifier; the program checks
they agree, prints a table and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from mrt_jax.rewards import VerifierPool, verify_batch
from mrt_jax.rewards.math_verifier import verify_math

_THINK = ("<think>\nLet me set up the problem. {work}\nWait, let me double-check that step. "
          "Yes, it holds.\n</think>\n\n")
# (gold, work shown in the thinking, final answer text).
TABLE = [
    ("42", "6 times 7 is 42.", "The answer is $\\boxed{42}$."),
    ("\\frac{3}{4}", "We get 3 over 4.", "Therefore the probability is $\\boxed{\\dfrac{3}{4}}$."),
    ("0.75", "3/4 as a decimal.", "$\\boxed{\\frac{3}{4}}$"),
    ("2\\sqrt{3}", "sqrt(12) simplifies.", "So $x = \\boxed{\\sqrt{12}}$."),
    ("\\frac{\\sqrt{2}}{2}", "sin 45.", "The value is $\\boxed{\\frac{1}{\\sqrt{2}}}$."),
    ("(-\\infty, 2]", "The inequality flips.", "The solution set is $\\boxed{(-\\infty, 2]}$."),
    ("(1, 2)", "The pair solves both.", "$\\boxed{(1,2)}$"),
    ("x^2+2x+1", "Expand the square.", "$\\boxed{(x+1)^2}$"),
    ("\\text{(C)}", "Option C fits.", "The correct option is $\\boxed{C}$."),
    ("1000", "Ten cubed.", "**Final answer:** $\\boxed{1{,}000}$"),
    ("17", "Primes below 20 ...", "The answer is 17."),
    ("5", "I first thought 4.", "$\\boxed{4}$"),
    ("\\pi", "Half the circumference of a unit circle.", "$\\boxed{\\pi}$"),
    ("\\frac{1}{3}", "Rounded.", "$\\boxed{0.333}$"),
    ("12", "3 boxes of 4.", "There are **12** apples in total."),
    ("-7", "Move the constant.", "Hence $x=\\boxed{-7}$."),
    ("\\{1, 2, 3\\}", "All three work.", "$\\boxed{\\{1,2,3\\}}$"),
    ("e^{2}", "Exponentiate.", "$\\boxed{e^2}$"),
    ("\\frac{7}{2}", "The mean of 3 and 4.", "$\\boxed{3.5}$"),
    ("100", "Too long; I stop here.", "I'm not sure; maybe 99?"),
]


def completions(calls: int) -> tuple[list[dict], list[str]]:
  """`calls` (record, completion) pairs cycling through TABLE."""
  records, texts = [], []
  for i in range(calls):
    gold, work, answer = TABLE[i % len(TABLE)]
    records.append({"answer": gold})
    texts.append(_THINK.format(work=work) + answer)
  return records, texts


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--calls", type=int, default=2000)
  parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
  parser.add_argument("--timeout-s", type=float, default=10.0)
  args = parser.parse_args()
  records, texts = completions(args.calls)
  ids = [np.zeros(0, np.int32)] * args.calls
  print(f"load average: {os.getloadavg()}")

  verify_math(records[0], texts[0], ids[0])  # math-verify's imports and first-call caches
  start = time.perf_counter()
  single = np.array([verify_math(r, t, i) for r, t, i in zip(records, texts, ids)], np.float32)
  single_s = time.perf_counter() - start

  with VerifierPool(num_workers=args.workers, timeout_s=args.timeout_s) as pool:
    verify_batch("math", records[:2 * args.workers], texts[:2 * args.workers],
                 ids[:2 * args.workers], pool=pool)  # every worker's first-call caches
    start = time.perf_counter()
    pooled, stats = verify_batch("math", records, texts, ids, pool=pool)
    pool_s = time.perf_counter() - start
  if stats["errors"] or stats["timeouts"] or not np.array_equal(single, pooled):
    raise SystemExit(f"the pool disagrees with one process: {stats['details'][:5]}")

  rates = {"single_process": args.calls / single_s, "pool": args.calls / pool_s}
  print(f"{'path':<16} {'calls':>6} {'seconds':>8} {'calls/s':>9}")
  for name, seconds in (("single_process", single_s), ("pool", pool_s)):
    print(f"{name:<16} {args.calls:>6} {seconds:>8.2f} {rates[name]:>9.1f}")
  speedup = rates["pool"] / rates["single_process"]
  print(f"pool of {args.workers} workers / one process: {speedup:.2f}x; reward mean "
        f"{single.mean():.3f}")
  print(json.dumps({"calls": args.calls, "workers": args.workers,
                    "single_process_calls_per_s": round(rates["single_process"], 1),
                    "pool_calls_per_s": round(rates["pool"], 1), "speedup": round(speedup, 2),
                    "reward_mean": round(float(single.mean()), 4)}))


if __name__ == "__main__":
  main()
