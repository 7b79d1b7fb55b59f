"""TPU memory and FLOPs of a config on a slice, compiled on this CPU through libtpu.

  python benchmarks/aot_7b.py                       # configs/mrt_rl_7b.py on a v5p-64
  python benchmarks/aot_7b.py --config=configs/mrt_rl_1_5b.py --topology=v5p-64 \\
      --config.train.micro_batch_prompts=1

Runs `python -m mrt_jax.aot` with these arguments (defaults above), prints its JSON line, then
a table per program (GiB per device), the phase peaks against the chip's HBM and the predicted
lower bound of one RL step's time with the train step's MFU. Exits with the CLI's status
(1: does not fit).
"""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GiB = 1 << 30


def _gib(n) -> str:
  return "-" if n is None else f"{n / GiB:.1f}"


def main(argv: list[str]) -> int:
  args = list(argv)
  if not any(a.startswith("--config=") for a in args):
    args.insert(0, "--config=configs/mrt_rl_7b.py")
  if not any(a.startswith("--topology=") for a in args):
    args.append("--topology=v5p-64")
  print("$ python -m mrt_jax.aot " + " ".join(args), flush=True)
  proc = subprocess.run([sys.executable, "-m", "mrt_jax.aot", *args], cwd=ROOT,
                        capture_output=True, text=True)
  lines = proc.stdout.strip().splitlines()
  if not lines:
    sys.stderr.write(proc.stderr[-4000:])
    return proc.returncode
  out = json.loads(lines[-1])
  print(lines[-1])
  print(f"\n{out['config']} on {out['topology']} ({out['libtpu_topology']}, "
        f"{out['num_devices']} x {out['device_kind']}), mesh {out['mesh']}")
  print(f"{'program':<8} {'total':>8} {'args':>8} {'temp':>8} {'out-alias':>9} {'compile s':>9}"
        "  note")
  for name, p in out["programs"].items():
    if p["compiled"]:
      print(f"{name:<8} {_gib(p['total_bytes']):>8} {_gib(p['argument_bytes']):>8} "
            f"{_gib(p['temp_bytes']):>8} {_gib(p['output_bytes'] - p['alias_bytes']):>9} "
            f"{p['compile_seconds']:>9}")
    else:
      print(f"{name:<8} {_gib(p['total_bytes']):>8} {'':>8} {'':>8} {'':>9} "
            f"{p['compile_seconds']:>9}  refused: {p['error']}")
  r = out["resident_bytes"]
  print(f"resident: train state {_gib(r['train_state_bytes'])} GiB, reference params "
        f"{_gib(r['ref_params_bytes'])} GiB")
  for phase, n in out["phase_peak_bytes"].items():
    print(f"phase {phase:<9} {_gib(n):>8} GiB")
  bound = " (lower bound)" if out["peak_is_lower_bound"] else ""
  print(f"peak {_gib(out['peak_bytes_per_device'])} GiB{bound} ({out['peak_phase']}) vs HBM "
        f"{_gib(out['hbm_bytes_per_device'])} GiB: {'fits' if out['fits'] else 'DOES NOT FIT'}")
  print(f"train step {out['flops_per_step'] / 1e15:.1f} PFLOP ({out['train_shapes']}); "
        f"decode {out['decode_flops_per_token_step'] / 1e12:.1f} TFLOP per token step")
  p = out["predicted"]
  print(f"peaks per chip: {p['peak_flops_per_chip'] / 1e12:.0f} TFLOP/s bf16, "
        f"{p['hbm_bytes_per_second'] / 1e9:.0f} GB/s HBM")
  print(lines[-2] if len(lines) > 1 else "")  # the CLI's predicted step time and MFU
  return proc.returncode


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
