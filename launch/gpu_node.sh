#!/usr/bin/env bash
# Runs one mrt_jax config on NVIDIA GPUs: one process per node, all local GPUs in it.
#
# Single node:   bash launch/gpu_node.sh configs/mrt_rl_7b.py [--config.field=value ...]
# Several nodes: on node i of N, with node 0's address reachable from all of them:
#   COORDINATOR=node0:12345 NUM_PROCESSES=N PROCESS_ID=i bash launch/gpu_node.sh CONFIG ...
# Under SLURM the three variables are derived from SLURM_* when unset.
#
# Requires `pip install -e ".[cuda]"` (or ".[cuda13]"). The config's mesh must multiply to the
# total number of GPUs (data x fsdp x tensor).
set -euo pipefail
if [[ $# -lt 1 ]]; then
  echo "usage: $0 CONFIG [--config.field=value ...]" >&2
  exit 2
fi
CONFIG="$1"; shift
if [[ -n "${SLURM_NTASKS:-}" && -z "${NUM_PROCESSES:-}" ]]; then
  NUM_PROCESSES="$SLURM_NTASKS"
  PROCESS_ID="$SLURM_PROCID"
  HEAD=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)
  COORDINATOR="${HEAD}:${MRT_PORT:-12345}"
fi
# Let XLA use most of the GPU memory for the KV cache and activations.
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.92}"
DIST=()
if [[ -n "${NUM_PROCESSES:-}" && "${NUM_PROCESSES}" != "1" ]]; then
  DIST=(--coordinator_address="$COORDINATOR" --num_processes="$NUM_PROCESSES"
        --process_id="$PROCESS_ID")
fi
exec python -m mrt_jax.launch --config="$CONFIG" "${DIST[@]}" "$@"
