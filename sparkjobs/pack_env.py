"""Pack this environment (Python itself, every installed package, and this project) into one
relocatable archive, for ``spark-submit --archives env.tar.gz#env --conf spark.pyspark.python=./env/bin/python``.

    torchonspark pack-env dist/torchonspark-env.tar.gz        (what `make dist` runs)

Why our own packer: conda-pack needs a conda environment and venv-pack leaves the interpreter out
(its ``bin/python`` points at this machine's Python, which a cluster node does not have). PEX also
needs a Python on the node. This archive carries the interpreter: a node needs only Linux x86-64
with glibc 2.28 or newer (what the manylinux_2_28 wheels of torch need) and, for GPU training, the
NVIDIA driver. No Python, no conda.

Layout (the archive's root is the environment's root)::

    bin/python, bin/python3       a small shell script: puts lib/ on LD_LIBRARY_PATH, runs the interpreter
    bin/python3.11.real           the interpreter (its RUNPATH names this machine's lib/, hence the script)
    lib/libpython3.11.so.1.0      when the interpreter is built shared
    lib/python3.11/               the standard library, and site-packages with every package of this
                                  environment plus this project installed from its own wheel

CPython finds its standard library relative to the interpreter's own location, so the tree works
wherever it is unpacked.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path

from torchonspark.sparkjobs.commandline import OneLineErrorParser, job_main

PROJECT = Path(__file__).resolve().parents[1]
VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"
# Parts of the standard library no job uses: its own tests, GUIs, bundled installers.
STDLIB_LEFT_OUT = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "site-packages", "config-" + VERSION}
LEFT_OUT_NAMES = {"__pycache__"}
SPARK_WORK_DIR = ("pyspark", "work")  # standalone and local-cluster executors' scratch space, not code
WRAPPER = """#!/bin/sh
# Run the packed interpreter with the packed libpython, wherever this environment was unpacked.
here=$(cd "$(dirname "$0")" && pwd)
LD_LIBRARY_PATH="$here/../lib${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}"
export LD_LIBRARY_PATH
exec "$here/python{version}.real" "$@"
"""
# Spark unpacks .tar.gz/.tgz with `tar`, which keeps the executable bits; its .tar and .zip
# unpacking loses them (checked with Spark 3.5's Utils.unpack), and the interpreter must be executable.
SUFFIXES = (".tar.gz", ".tgz")


def _ignore(folder: str, names: list[str]) -> set[str]:
    return {name for name in names if name in LEFT_OUT_NAMES or name.endswith((".pyc", ".pyo"))}


def _ignore_in_site_packages(folder: str, names: list[str]) -> set[str]:
    left_out = _ignore(folder, names)
    if Path(folder).name == SPARK_WORK_DIR[0] and SPARK_WORK_DIR[1] in names:
        left_out.add(SPARK_WORK_DIR[1])
    return left_out


def _link_or_copy(source: str, target: str) -> None:
    """Hard-link where the tree is on the same filesystem (the archive is read from it once and the
    tree then deleted, so several GB need not be copied first), copy otherwise."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _site_packages() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


def _is_editable_leftover(name: str) -> bool:
    return name.startswith(("__editable__", "__editable___")) or (name.startswith("torchonspark-") and name.endswith(".dist-info"))


def _project_wheel(target: Path) -> Path:
    """This project as a wheel (a real install, not the editable one that points at this checkout).
    setuptools stages files in the checkout's build/, and would carry files deleted since the last
    build into the wheel: it is cleared before and after."""
    staging = PROJECT / "build"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--wheel-dir", str(target), str(PROJECT)],
            check=True,
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return next(target.glob("torchonspark-*.whl"))


def build_tree(root: Path) -> None:
    """Lay the environment out under ``root``."""
    base = Path(sys.base_prefix)
    stdlib = base / "lib" / f"python{VERSION}"
    (root / "bin").mkdir(parents=True)
    shutil.copy2(Path(sys._base_executable).resolve(), root / "bin" / f"python{VERSION}.real")  # noqa: SLF001
    wrapper = WRAPPER.format(version=VERSION)
    for name in ("python", "python3", f"python{VERSION}"):
        (root / "bin" / name).write_text(wrapper)
        (root / "bin" / name).chmod(0o755)
    lib = root / "lib"
    lib.mkdir()
    for shared in base.joinpath("lib").glob("libpython*.so*"):
        shutil.copy2(shared, lib / shared.name, follow_symlinks=True)
    target = lib / f"python{VERSION}"
    target.mkdir()
    for entry in stdlib.iterdir():
        if entry.name in STDLIB_LEFT_OUT or entry.name in LEFT_OUT_NAMES:
            continue
        if entry.is_dir():
            shutil.copytree(entry, target / entry.name, ignore=_ignore, symlinks=False, copy_function=_link_or_copy)
        else:
            shutil.copy2(entry, target / entry.name)
    site = target / "site-packages"
    site.mkdir()
    for entry in _site_packages().iterdir():
        if _is_editable_leftover(entry.name) or entry.name in LEFT_OUT_NAMES:
            continue
        if entry.is_dir():
            shutil.copytree(entry, site / entry.name, ignore=_ignore_in_site_packages, symlinks=True, copy_function=_link_or_copy)
        else:
            shutil.copy2(entry, site / entry.name)
    with tempfile.TemporaryDirectory() as wheels:
        with zipfile.ZipFile(_project_wheel(Path(wheels))) as wheel:
            wheel.extractall(site)


def _write_archive(tree: Path, archive: Path) -> None:
    """tar piped to gzip -1: several times faster than Python's tarfile on a multi-GB tree, and
    level 1 compresses the packed libraries nearly as well as the default."""
    with archive.open("wb") as out:
        tar = subprocess.Popen(["tar", "-C", str(tree), "-cf", "-", "."], stdout=subprocess.PIPE)
        gzip = subprocess.run(["gzip", "-1"], stdin=tar.stdout, stdout=out)
        tar.stdout.close()
        if tar.wait() != 0 or gzip.returncode != 0:
            raise RuntimeError(f"packing {tree} failed (tar exit {tar.returncode}, gzip exit {gzip.returncode})")


def pack_env(output: str, overwrite: bool = False) -> dict[str, float]:
    """Write the archive (whole or not at all); return its size in bytes and the seconds taken."""
    target = Path(output)
    if not target.name.endswith(SUFFIXES):
        raise ValueError(f"OUT must end in .tar.gz or .tgz (Spark keeps file modes only when it unpacks those); got {output}")
    if target.exists() and not overwrite:
        raise ValueError(f"{output} already exists; pass --overwrite to replace it")
    if sys.prefix == sys.base_prefix:
        raise ValueError("run pack-env from the project's virtual environment (.venv/bin/torchonspark), not a system Python")
    if not (PROJECT / "setup.cfg").exists():
        raise ValueError(f"pack-env builds this project from its source checkout, and {PROJECT} is not one; run it from the checkout's .venv")
    for tool in ("tar", "gzip"):
        if shutil.which(tool) is None:
            raise ValueError(f"pack-env needs `{tool}` on PATH")
    started = time.monotonic()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".pack-env-") as work:
        tree = Path(work) / "env"
        build_tree(tree)
        partial = Path(work) / target.name
        _write_archive(tree, partial)
        os.replace(partial, target)
    return {"bytes": target.stat().st_size, "seconds": time.monotonic() - started}


def get_args_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="pack_env", description="Pack Python, every installed package and this project into one archive for spark-submit --archives.")
    parser.add_argument("output", metavar="OUT", help="the archive to write (.tar.gz or .tgz)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    return parser


def run(args: argparse.Namespace) -> int:
    result = pack_env(args.output, args.overwrite)
    print(f"{args.output}: {result['bytes'] / 2**30:.2f} GiB in {result['seconds']:.0f} s")
    print(f"use: spark-submit --archives {args.output}#env --conf spark.pyspark.python=./env/bin/python ...")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return job_main(get_args_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
