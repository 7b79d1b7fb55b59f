"""docs/RESULTS.md, whole: the reproduction (GRPO and seven MRT recipes), then the demo over seeds.

  nice -n 5 python experiments/results.py           # both studies (docs/RESULTS.md and JSON)
  python experiments/results.py --quick             # both as smoke runs, not a result

Runs `reproduce_demo.main` (docs/results.json, the measured section and the plots), then
`demo_seeds.main` (docs/demo_seeds.json and the demo-seeds section), each with its default
seeds and work directory; --quick and --set go to both. Each study resumes where an interrupted
run stopped, so an interrupted `results.py` resumes with the same command too.
"""

from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from experiments import demo_seeds, reproduce_demo  # noqa: E402  (after the path)


def study_argv(args) -> list[str]:
  """The options both studies receive."""
  return [*(["--quick"] if args.quick else []), *(f"--set={s}" for s in args.set)]


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="smoke runs (minutes, not a result)")
  parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                      help="extra config override for every run of both studies (repeatable)")
  args = parser.parse_args(argv)
  reproduce_demo.main(study_argv(args))
  demo_seeds.main(study_argv(args))


if __name__ == "__main__":
  main()
