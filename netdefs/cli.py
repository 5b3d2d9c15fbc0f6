"""``build_resnet``: the seed tool's command, on the torch builder.

    build_resnet -m bottleneck -b 3 4 6 3 -n 256 --no-fc_layers -o ./out
    Number of params: 25.556032 Million
    Number of flops: 3858.026368 Million

``-o DIR`` writes ``train.prototxt`` and ``test.prototxt`` (Caffe) and ``netdef.yaml`` (this project's
definition, which ``--model DIR/netdef.yaml`` and the training job load).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from importlib import metadata
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from .complexity import count_complexity, format_columns
from .netdef import NetDef, load_model, model_names
from .prototxt import to_prototxt
from .resnet import MAIN_BRANCHES

# The seed's defaults, used when neither a flag nor --model gives a value.
DEFAULT_NUM_OUTPUT_STAGE1 = 128
DEFAULT_BLOCKS = (3, 4, 6, 3)
OUTPUT_FILES = ("train.prototxt", "test.prototxt", "netdef.yaml")
ARCHITECTURE_KEYS = ("main_branch", "num_output_stage1", "blocks", "fc_layers")


class BuildResnetParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit status 2, as argparse). (The Spark
    jobs have their own: netdefs depends on nothing of theirs.)"""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} -h)\n")


def get_args_parser() -> BuildResnetParser:
    parser = BuildResnetParser(
        prog="build_resnet",
        description="Build a ResNet variant from legos, print its params and FLOPs (the seed's convention), "
        "and optionally write it as Caffe prototxt and as a netdef.",
    )
    parser.add_argument("-m", "--main_branch", choices=sorted(MAIN_BRANCHES), help="the block's main branch")
    parser.add_argument(
        "-n",
        "--num_output_stage1",
        type=int,
        help=f"width of the first stage of blocks; stage k is n*2^k (default {DEFAULT_NUM_OUTPUT_STAGE1})",
    )
    parser.add_argument(
        "-o", "--output_folder", help="write train.prototxt, test.prototxt and netdef.yaml into this folder"
    )
    parser.add_argument(
        "-b",
        "--blocks",
        type=int,
        nargs="+",
        help="number of blocks in the 4 stages (default %s)" % " ".join(map(str, DEFAULT_BLOCKS)),
    )
    parser.add_argument(
        "--fc_layers",
        dest="fc_layers",
        action="store_true",
        default=None,
        help="end with the FC stage (1x1 2048, pool, 1x1 4096, dropout, 1x1 classes)",
    )
    parser.add_argument(
        "--no-fc_layers", dest="fc_layers", action="store_false", help="end with pool + fully connected (default)"
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    parser.add_argument("--model", help="start from a model of conf/models (by name) or a netdef .yaml file")
    parser.add_argument("--num-classes", type=int, help="classes of the classifier (default 1000)")
    parser.add_argument("--input-size", type=int, help="side of the square input image in pixels (default 224)")
    parser.add_argument("--name", help="the network's name in the prototxt and netdef")
    parser.add_argument("--table", action="store_true", help="also print every layer's output shape, params and FLOPs")
    parser.add_argument("--overwrite", action="store_true", help="replace files that already exist in -o")
    parser.add_argument(
        "--list-models", action="store_true", help="build every model of conf/models and print their complexity"
    )
    return parser


def netdef_from_args(args: argparse.Namespace) -> NetDef:
    """The model --model names (or the seed's defaults), with every given flag overriding it."""
    if args.model is not None:
        base = load_model(args.model)
    elif args.main_branch is None:
        raise ValueError("give -m/--main_branch or --model")
    else:
        base = None
    overrides = {
        "main_branch": args.main_branch,
        "num_output_stage1": args.num_output_stage1,
        "blocks": tuple(args.blocks) if args.blocks is not None else None,
        "fc_layers": args.fc_layers,
        "num_classes": args.num_classes,
        "input_size": args.input_size,
        "name": args.name,
    }
    given = {key: value for key, value in overrides.items() if value is not None}
    if base is None:
        given.setdefault("num_output_stage1", DEFAULT_NUM_OUTPUT_STAGE1)
        given.setdefault("blocks", DEFAULT_BLOCKS)
        given.setdefault("fc_layers", False)
        architecture_changed = True
    else:
        given = {**base.to_dict(), **given}
        architecture_changed = any(
            overrides[key] is not None and overrides[key] != getattr(base, key) for key in ARCHITECTURE_KEYS
        )
    if architecture_changed and args.name is None:
        # A model changed by flags is no longer that model: name it by what it is.
        given["name"] = default_name(given["main_branch"], given["num_output_stage1"], given["blocks"], given["fc_layers"])
    return NetDef(**given)


def default_name(main_branch: str, num_output_stage1: int, blocks: Sequence[int], fc_layers: bool) -> str:
    name = f"resnet_{main_branch}_{num_output_stage1}_{'-'.join(map(str, blocks))}"
    return name + "_with4k" if fc_layers else name


def check_output_folder(folder: Path, overwrite: bool) -> None:
    """Refuse what would fail or clobber, before any work is done."""
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"-o {folder}: exists and is not a folder")
    if not overwrite:
        for file_name in OUTPUT_FILES:
            if (folder / file_name).exists():
                raise ValueError(f"-o {folder}: {file_name} already exists; pass --overwrite to replace it")


def write_files_atomically(folder: Path, contents: dict[str, str]) -> None:
    """Write every file under a temporary name first, then rename them all: a failure leaves the
    folder as it was (except for a folder it had to create)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"-o {folder}: cannot create the folder ({error.strerror})") from None
    temporary: dict[str, str] = {}
    try:
        for file_name, text in contents.items():
            handle, temp_path = tempfile.mkstemp(dir=folder, prefix=f".{file_name}.", suffix=".tmp")
            temporary[file_name] = temp_path
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                stream.write(text)
            os.chmod(temp_path, 0o666 & ~_umask())  # mkstemp makes it private; give it a plain file's mode
        for file_name, temp_path in temporary.items():
            os.replace(temp_path, folder / file_name)
    except OSError as error:
        for temp_path in temporary.values():
            Path(temp_path).unlink(missing_ok=True)
        raise ValueError(f"-o {folder}: cannot write ({error.strerror})") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def package_version() -> str:
    """The installed distribution's version (what --version prints, here and in `torchonspark`)."""
    try:
        return metadata.version("torchonspark")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        return "unknown (not installed)"


def list_models() -> str:
    """Every model of conf/models with its params and FLOPs (the seed's convention), as a table."""
    header = ("model", "main_branch", "n", "blocks", "fc", "params (M)", "flops (M)")
    rows = [header]
    for name in model_names():
        netdef = load_model(name)
        complexity = count_complexity(netdef.build())
        rows.append(
            (
                name,
                netdef.main_branch,
                str(netdef.num_output_stage1),
                " ".join(map(str, netdef.blocks)),
                "yes" if netdef.fc_layers else "no",
                f"{complexity.params / 1e6:.6f}",
                f"{complexity.flops / 1e6:.6f}",
            )
        )
    return format_columns(rows, first_numeric=5)


def main(argv: Sequence[str] | None = None) -> int:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    if args.list_models:
        _print_lines([list_models()])
        return 0
    try:
        netdef = netdef_from_args(args)
        folder = Path(args.output_folder) if args.output_folder else None
        if folder is not None:
            check_output_folder(folder, args.overwrite)
        net = netdef.build()
        complexity = count_complexity(net)
        if folder is not None:
            write_files_atomically(
                folder,
                {
                    "train.prototxt": to_prototxt(net, "train", netdef.name),
                    "test.prototxt": to_prototxt(net, "test", netdef.name),
                    "netdef.yaml": netdef.to_yaml(),
                },
            )
    except ValueError as error:
        parser.error(str(error))
    lines = complexity.summary_lines()
    _print_lines([complexity.table(), *lines] if args.table else lines)
    return 0


def _print_lines(lines: Sequence[str]) -> None:
    try:
        print("\n".join(lines), flush=True)
    except BrokenPipeError:
        # The reader (`| head`) has gone: stop quietly, as Unix tools do, instead of a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
