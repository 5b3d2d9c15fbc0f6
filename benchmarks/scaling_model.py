"""The scaling model on paper: predicted images/s, scaling efficiency and time to train ResNet-50 on
ImageNet on 1-64 GPUs over each link of docs/scaling_inputs.yaml, for the seed's recipe and the
large-batch recipe, with and without bf16 gradient compression. Writes the table between the markers of
docs/scaling.md (the prose around it is hand-written); no Spark, no torch.

    .venv/bin/python benchmarks/scaling_model.py [--inputs docs/scaling_inputs.yaml] [--doc docs/scaling.md] [--check]

The model, per step of one GPU's batch b on N GPUs (gpus_per_node G per node):

  compute   t_c = b / gpu_rate, of which backward t_b = backward_share * t_c
  all-reduce, a ring over the N GPUs (NCCL's ring; as gloo's, validated in benchmarks/link_allreduce.py):
            T = ratio * (2(N-1) * buckets * latency + 2(N-1)/N * bytes * s / bandwidth)
            bandwidth = NVLink's inside one node (N <= G); across nodes, the node's NICs:
            nics_per_node * rate * efficiency (the ring crosses every node boundary with every byte)
            s = 1, or compression_bytes_factor with bf16 compression; ratio = the measured / model ratio
  overlap   DDP all-reduces a bucket while backward goes on; the all-reduce can start when the first bucket
            is ready (overlap_share of backward is left) and the last bucket's cannot overlap at all:
            visible = max(last_bucket_share * T, T - overlap_share * t_b)
  step      t_c + visible; images/s = N * b / step, capped by the loader (cores per GPU x rate per core)
  efficiency = images/s on N / (N * images/s on 1)
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
GPU_COUNTS = (1, 2, 4, 8, 16, 32, 64)
BEGIN = "<!-- scaling table: begin (benchmarks/scaling_model.py writes what is between these markers) -->"
END = "<!-- scaling table: end -->"
BUCKETS = 5  # wrap_ddp's buckets for ResNet-50, DDP's own layout (measured here: benchmarks/link_allreduce.py)


@dataclass(frozen=True)
class Recipe:
    name: str
    batch_per_gpu: int
    train_images: float  # images the whole run processes


@dataclass(frozen=True)
class Prediction:
    images_per_s: float
    efficiency: float
    hours: float


def value(inputs: dict, *keys: str) -> float:
    entry = inputs
    for key in keys:
        entry = entry[key]
    return entry["value"] if isinstance(entry, dict) and "value" in entry else entry


def load_recipes(inputs: dict) -> list[Recipe]:
    imagenet = value(inputs, "imagenet_train_images")
    seed = yaml.safe_load((ROOT / inputs["recipes"]["seed"]["file"]).read_text())
    seed_images = seed["max_iter"] * inputs["recipes"]["seed"]["images_per_iteration"]
    large = yaml.safe_load((ROOT / inputs["recipes"]["large_batch"]["file"]).read_text())
    return [Recipe(f"seed ({seed['batch_size']} images/GPU, {seed['max_iter']:,} iterations x 256 = "
                   f"{seed_images / imagenet:.0f} epochs)", seed["batch_size"], seed_images),
            Recipe(f"large batch ({large['batch_size']} images/GPU, {large['epochs']} epochs)", large["batch_size"],
                   large["epochs"] * imagenet)]


def allreduce_seconds(inputs: dict, link: str, gpus: int, compressed: bool) -> float:
    if gpus == 1:
        return 0.0
    within_node = gpus <= value(inputs, "gpu", "gpus_per_node")
    spec = inputs["links"]["nvlink" if within_node else link]
    bandwidth = spec["nics_per_node"] * spec["rate_gbit"] * 1e9 / 8 * spec["efficiency"]  # bytes/s
    scale = value(inputs, "link_model", "compression_bytes_factor") if compressed else 1.0
    nbytes = value(inputs, "model", "gradient_bytes") * scale
    seconds = 2 * (gpus - 1) * BUCKETS * spec["latency_us"] * 1e-6 + 2 * (gpus - 1) / gpus * nbytes / bandwidth
    return value(inputs, "link_model", "measured_over_model") * seconds


def predict(inputs: dict, recipe: Recipe, link: str, gpus: int, compressed: bool) -> Prediction:
    rate = value(inputs, "gpu", "images_per_s")
    compute = recipe.batch_per_gpu / rate
    backward = value(inputs, "gpu", "backward_share") * compute
    comm = allreduce_seconds(inputs, link, gpus, compressed)
    visible = max(value(inputs, "model", "last_bucket_share") * comm, comm - value(inputs, "model", "overlap_share") * backward)
    loader_cap = value(inputs, "gpu", "cpu_cores_per_gpu") * value(inputs, "loader", "images_per_s_per_core")
    per_gpu = min(recipe.batch_per_gpu / (compute + visible), loader_cap)
    single = min(rate, loader_cap)
    images_per_s = gpus * per_gpu
    return Prediction(images_per_s, per_gpu / single, recipe.train_images / images_per_s / 3600)


def duration(hours: float) -> str:
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} d"


def render_table(inputs: dict) -> str:
    links = [name for name in inputs["links"] if name != "nvlink"]
    lines = []
    for recipe in load_recipes(inputs):
        lines += [f"**{recipe.name}**: images/s, scaling efficiency, time to train", "",
                  "| link | compression | " + " | ".join(f"{n} GPU{'s' if n > 1 else ''}" for n in GPU_COUNTS) + " |",
                  "| --- | --- | " + " | ".join("---:" for _ in GPU_COUNTS) + " |"]
        for link in links:
            for compressed in (False, True):
                cells = []
                for gpus in GPU_COUNTS:
                    p = predict(inputs, recipe, link, gpus, compressed)
                    cells.append(f"{p.images_per_s:,.0f}<br>{100 * p.efficiency:.0f}%<br>{duration(p.hours)}")
                lines.append(f"| {link} | {'bf16' if compressed else 'none'} | " + " | ".join(cells) + " |")
        lines.append("")
    rate = value(inputs, "loader", "images_per_s_per_core")
    target = value(inputs, "loader", "target_images_per_s")
    lines.append(f"Loader: {rate:.0f} images/s per CPU core, so {target:,.0f} images/s per GPU needs {target / rate:.1f} cores per GPU "
                 f"(the cluster has {value(inputs, 'gpu', 'cpu_cores_per_gpu'):.0f}: the loader never caps the rates above).")
    return "\n".join(lines) + "\n"


def replace_between_markers(document: str, table: str) -> str:
    if BEGIN not in document or END not in document:
        raise ValueError(f"the document has no markers {BEGIN!r} ... {END!r}")
    head, rest = document.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{table}{END}{tail}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=Path, default=ROOT / "docs" / "scaling_inputs.yaml")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "scaling.md")
    parser.add_argument("--check", action="store_true", help="exit 1 if the document's table is not what the inputs give")
    args = parser.parse_args()
    for path in (args.inputs, args.doc):
        if not path.is_file():
            print(f"scaling_model: no such file: {path}", file=sys.stderr)
            sys.exit(2)
    inputs = yaml.safe_load(args.inputs.read_text())
    document = args.doc.read_text()
    try:
        updated = replace_between_markers(document, render_table(inputs))
    except (KeyError, ValueError) as error:
        print(f"scaling_model: {error}", file=sys.stderr)
        sys.exit(2)
    if args.check:
        sys.exit(0 if updated == document else 1)
    args.doc.write_text(updated)
    print(f"wrote the table of {args.doc}")


if __name__ == "__main__":
    main()
