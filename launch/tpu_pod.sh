#!/usr/bin/env bash
# Runs one mrt_jax config on every worker of a TPU VM pod slice.
#
#   bash launch/tpu_pod.sh TPU_NAME ZONE configs/mrt_rl_7b.py [--config.field=value ...]
#
# Every worker must have the repository at the same path (REPO_DIR, default: this checkout's
# path) with `pip install -e ".[tpu]"` done, and the checkpoint/data paths of the config present.
# jax.distributed discovers the slice's workers by itself on TPU VMs. Output of each worker goes
# to /tmp/mrt_jax_launch.log on that worker; worker 0's metrics go to the config's workdir.
set -euo pipefail
if [[ $# -lt 3 ]]; then
  echo "usage: $0 TPU_NAME ZONE CONFIG [--config.field=value ...]" >&2
  exit 2
fi
TPU_NAME="$1"; ZONE="$2"; CONFIG="$3"; shift 3
REPO_DIR="${REPO_DIR:-$(cd "$(dirname "$0")/.." && pwd)}"
EXTRA=""
for arg in "$@"; do EXTRA+=" $(printf '%q' "$arg")"; done
gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all --command="
  cd $(printf '%q' "$REPO_DIR") &&
  python -m mrt_jax.launch --config=$(printf '%q' "$CONFIG")$EXTRA 2>&1 | tee /tmp/mrt_jax_launch.log"
