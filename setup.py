"""mrt_jax: Meta Reinforcement Fine-Tuning (MRT) for LLM reasoners, in JAX."""

from setuptools import find_packages, setup

setup(
    name="mrt_jax",
    version="0.1.0",
    description="Meta Reinforcement Fine-Tuning (progress-rewarded GRPO) for LLM reasoners in JAX",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["mrt_jax", "mrt_jax.*"]),
    install_requires=[
        # No upper pins on jax: a hard TPU/CUDA pin blocks the other platform's users.
        "jax>=0.8.0",
        "flax>=0.10",
        "optax>=0.2.4",
        "orbax-checkpoint>=0.11",
        # Workdir files (metrics, TensorBoard events, evaluation outputs) on local disks or
        # buckets; gs:// also needs gcsfs (the `gcs` extra), as Orbax's own epath does.
        "etils[epath]>=1.5",
        "fsspec>=2023.1",
        "grain>=0.2.10",
        "tensorstore>=0.1.70",
        "ml-collections>=1.0",
        "ml_dtypes>=0.5",
        "numpy>=1.26",
        "absl-py>=2.1",
        # Tokenizers, chat templates and parity tests; the models themselves are pure JAX.
        "transformers>=4.56",
        "tokenizers>=0.21",
        "sentencepiece>=0.2",
        "jinja2>=3.1",  # transformers renders chat templates with it (not its own dependency)
        "safetensors>=0.4",  # reading checkpoints' tensors by name (experiments/summarize.py)
        "math-verify>=0.7",
        "tqdm>=4.66",
        "tensorboardX>=2.6",
        "matplotlib>=3.8",
    ],
    extras_require={
        "tpu": ["jax[tpu]>=0.8.0"],
        "cuda": ["jax[cuda12]>=0.8.0"],     # CUDA 12 wheels with bundled CUDA libraries.
        "cuda13": ["jax[cuda13]>=0.8.0"],   # For CUDA 13 drivers.
        "data": ["pyarrow>=15", "datasets>=2.19"],  # parquet files and `datasets` directories
        "gcs": ["gcsfs>=2023.1"],  # gs:// workdirs for the files etils.epath writes
        "test": [
            "pytest>=8",
            # The reference the Hugging Face parity tests compare with (they run it on the CPU);
            # pinned so parity is checked against one known implementation.
            "torch==2.13.0",
            # libtpu AOT-compiles for TPU topologies on a CPU machine; it ships for x86-64 Linux
            # only, and the AOT tests skip where it is missing.
            "jax[tpu]>=0.8.0; sys_platform == 'linux' and platform_machine == 'x86_64'",
            "scipy>=1.11",  # distribution tests of the sampler (chi-square, KS)
            "portpicker>=1.6",  # free ports for the multi-process (jax.distributed) tests
            "pyarrow>=15",  # parquet datasets
            "nbformat>=5.9",
            "nbclient>=0.10",
            "ipykernel>=6.29",
        ],
    },
)
