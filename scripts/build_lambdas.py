"""Build the Lambda package of one environment: a byte-identical zip for the same commit.

    python scripts/build_lambdas.py --env dev            # dist/classwire-lambda-arm64-python3.13.zip
    python scripts/build_lambdas.py --env local          # this machine's CPU and Python (the local cloud)
    python scripts/build_lambdas.py --arch x86_64 --runtime python3.12 --out /tmp/pkg

The zip holds, at its root, the `lambda` dependency group exactly as `uv.lock` pins it (wheels built for
the function's CPU and Python, checked against the lock's hashes) and the `classwire` package, so the
handlers are `classwire.handlers.<name>.handler`. Terraform sets `source_code_hash` from the zip's bytes,
so nothing machine- or time-dependent goes in: entries are sorted, every one has the same timestamp
(1980-01-01, the zip format's earliest) and mode (0644), no directory entries, no extra fields, and the
installer's RECORD/INSTALLER/REQUESTED files, `bin/` scripts and bytecode are left out. The same commit
then gives the same bytes on every machine with the same zlib (deflate output is zlib's).

Installed dependencies are cached under build/lambda-deps/, keyed by the exported requirements (so by
the lock), the platform and the Python version: a rebuild after a code change only re-zips.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from classwire_infra.paths import ROOT

PACKAGE_DIR = ROOT / "lambdas" / "classwire"
DEFAULT_OUT = ROOT / "dist"
DEFAULT_CACHE = ROOT / "build" / "lambda-deps"
DEPENDENCY_GROUP = "lambda"

# Every entry gets these: the earliest time a zip can hold, and rw-r--r-- regular files (Lambda needs
# only read access to code and shared libraries; it creates the directories itself).
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
ZIP_FILE_MODE = 0o100644
ZIP_CREATE_SYSTEM = 3  # Unix, so the mode above is honoured
ZIP_COMPRESSION = zipfile.ZIP_DEFLATED
ZIP_COMPRESS_LEVEL = 6  # zlib's default: level 9 saves 0.5 % and triples the time
# Bump when what goes into the dependency cache changes (clean-up rules, installer flags).
CACHE_FORMAT = "1"

# What an installer writes that depends on the machine or the moment, not on the wheels.
DROP_DIST_INFO_FILES = frozenset(
    {"RECORD", "RECORD.jws", "RECORD.p7s", "INSTALLER", "REQUESTED", "direct_url.json", "uv_cache.json"}
)
DROP_TOP_LEVEL = frozenset({"bin", ".lock"})

ELF_MACHINE = {"arm64": 183, "x86_64": 62}  # EM_AARCH64, EM_X86_64
UV_PLATFORM = {"arm64": "aarch64-manylinux2014", "x86_64": "x86_64-manylinux2014"}


class BuildError(RuntimeError):
    """The package cannot be built as asked; the message says why."""


@dataclass(frozen=True)
class Target:
    """What the zip is built for: the function's CPU architecture and Lambda runtime."""

    architecture: str  # "arm64" | "x86_64", as Lambda names them
    runtime: str  # "python3.13"

    def __post_init__(self) -> None:
        if self.architecture not in ELF_MACHINE:
            raise BuildError(f"architecture must be one of {sorted(ELF_MACHINE)}, got {self.architecture!r}")
        if not re.fullmatch(r"python3\.\d+", self.runtime):
            raise BuildError(f"runtime must look like python3.13, got {self.runtime!r}")

    @property
    def python_version(self) -> str:
        return self.runtime.removeprefix("python")

    @property
    def uv_platform(self) -> str:
        return UV_PLATFORM[self.architecture]

    @property
    def zip_name(self) -> str:
        return f"classwire-lambda-{self.architecture}-{self.runtime}.zip"


@dataclass(frozen=True)
class BuildResult:
    path: Path
    size: int
    sha256_hex: str
    sha256_base64: str  # what Terraform's source_code_hash compares
    entries: int
    deps_cached: bool
    seconds: float

    def report(self) -> str:
        try:
            shown = self.path.relative_to(Path.cwd())
        except ValueError:
            shown = self.path
        return "\n".join(
            [
                f"{shown}",
                f"  size     {self.size} bytes ({self.size / 1_000_000:.2f} MB)",
                f"  entries  {self.entries}",
                f"  sha256   {self.sha256_hex}",
                f"  base64   {self.sha256_base64}",
                f"  deps     {'cached' if self.deps_cached else 'installed'}; built in {self.seconds:.1f} s",
            ]
        )


# -- targets -----------------------------------------------------------------------------------------
def _load_config(env: str):
    from classwire_infra.config import load

    return load(env)


def target_for(env: str, architecture: str | None = None, runtime: str | None = None) -> Target:
    """The environment's target, with either part overridden; the zip name is the config's."""
    config = _load_config(env)
    if architecture or runtime:
        config = dataclasses.replace(
            config,
            lambda_architecture=architecture or config.lambda_architecture,
            lambda_runtime=runtime or config.lambda_runtime,
        )
    target = Target(config.lambda_architecture, config.lambda_runtime)
    if Path(config.lambda_zip).name != target.zip_name:  # the infrastructure reads config.lambda_zip
        raise BuildError(f"zip name {target.zip_name} differs from the config's {config.lambda_zip}")
    return target


# -- dependencies ------------------------------------------------------------------------------------
def uv_binary() -> str:
    """The project's uv: UV (the Makefile exports it), else the one `make install` put in .venv-tools,
    else one on PATH."""
    installed = ROOT / ".venv-tools" / "bin" / "uv"
    uv = os.environ.get("UV") or (str(installed) if installed.exists() else shutil.which("uv"))
    if not uv:
        raise BuildError("no uv: run `make install` (it installs the pinned one into .venv-tools)")
    return uv


def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise BuildError(
            f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr or result.stdout}"
        )
    return result


def export_requirements() -> str:
    """The `lambda` group as uv.lock pins it, with every wheel's hash."""
    return _run(
        [
            uv_binary(),
            "export",
            "--frozen",
            "--only-group",
            DEPENDENCY_GROUP,
            "--no-emit-project",
            "--format",
            "requirements.txt",
            "--no-header",
            "--no-annotate",
        ],
        cwd=ROOT,
    ).stdout


def _clean_installed(directory: Path) -> None:
    for name in DROP_TOP_LEVEL:
        path = directory / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
    for dirpath, dirnames, filenames in os.walk(directory, topdown=True):
        for dirname in [d for d in dirnames if d == "__pycache__"]:
            shutil.rmtree(Path(dirpath, dirname))
            dirnames.remove(dirname)
        in_dist_info = dirpath.endswith(".dist-info") and Path(dirpath).parent == directory
        for filename in filenames:
            if filename.endswith((".pyc", ".pyo")) or (in_dist_info and filename in DROP_DIST_INFO_FILES):
                Path(dirpath, filename).unlink()


def install_dependencies(target: Target, cache_dir: Path, use_cache: bool = True) -> tuple[Path, bool]:
    """A directory holding the target's dependencies, cleaned; (path, whether it came from the cache)."""
    requirements = export_requirements()
    key = hashlib.sha256(
        "\n".join([CACHE_FORMAT, target.uv_platform, target.python_version, requirements]).encode()
    ).hexdigest()[:16]
    prefix = f"{target.uv_platform}-py{target.python_version}-"
    final = cache_dir / f"{prefix}{key}"
    if use_cache and final.is_dir():
        return final, True

    cache_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".install-", dir=cache_dir))
    try:
        (work / "requirements.txt").write_text(requirements)
        site = work / "site"
        _run(
            [
                uv_binary(),
                "pip",
                "install",
                "--no-config",
                "--quiet",
                "--target",
                str(site),
                "--python-platform",
                target.uv_platform,
                "--python-version",
                target.python_version,
                "--only-binary",
                ":all:",
                "--require-hashes",
                "--no-deps",
                "--link-mode",
                "copy",
                "-r",
                str(work / "requirements.txt"),
            ],
            cwd=ROOT,
        )
        _clean_installed(site)
        if final.exists():  # a stale or --no-cache'd copy; replace it whole
            shutil.rmtree(final)
        try:
            os.replace(site, final)
        except OSError:
            if not final.is_dir():  # not a concurrent build that got there first
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for stale in cache_dir.glob(f"{prefix}*"):  # older locks for this target
        if stale != final and stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
    return final, False


# -- the zip -----------------------------------------------------------------------------------------
def _files_under(directory: Path, *, skip_hidden: bool) -> dict[str, Path]:
    """Every regular file under `directory` by its path relative to it, bytecode and caches left out."""
    files: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames[:] = [d for d in dirnames if d != "__pycache__" and not (skip_hidden and d.startswith("."))]
        for filename in filenames:
            if filename.endswith((".pyc", ".pyo")) or (skip_hidden and filename.startswith(".")):
                continue
            path = Path(dirpath, filename)
            if not path.is_file():
                raise BuildError(f"{path} is not a regular file")
            files[path.relative_to(directory).as_posix()] = path
    return files


def collect_entries(deps_dir: Path, package_dir: Path = PACKAGE_DIR) -> dict[str, Path]:
    """Archive name -> source file: the dependencies at the root, then the `classwire` package."""
    entries = _files_under(deps_dir, skip_hidden=False)
    package = {
        f"{package_dir.name}/{name}": path
        for name, path in _files_under(package_dir, skip_hidden=True).items()
    }
    clash = sorted(set(entries) & set(package))
    if clash or any(name.split("/", 1)[0] == package_dir.name for name in entries):
        raise BuildError(f"a dependency ships files inside {package_dir.name}/: {clash[:5]}")
    if f"{package_dir.name}/__init__.py" not in package:
        raise BuildError(f"{package_dir} is not a Python package")
    entries.update(package)
    return entries


def check_binaries(entries: dict[str, Path], target: Target) -> None:
    """Every shared library is an ELF for the target's CPU, and every extension for its Python."""
    tag = "cpython-" + target.python_version.replace(".", "")
    for name, path in entries.items():
        if not name.endswith(".so") and ".so." not in name:
            continue
        with open(path, "rb") as file:
            header = file.read(20)
        if header[:4] != b"\x7fELF":
            raise BuildError(f"{name} is not an ELF file")
        byteorder: Literal["little", "big"] = "little" if header[5] == 1 else "big"
        machine = int.from_bytes(header[18:20], byteorder)
        if machine != ELF_MACHINE[target.architecture]:
            raise BuildError(f"{name} is built for ELF machine {machine}, not {target.architecture}")
        found = re.search(r"\.(cpython-\d+)-", name)
        if found and found.group(1) != tag:
            raise BuildError(f"{name} is built for {found.group(1)}, not {target.runtime}")


def write_zip(entries: dict[str, Path], destination: Path) -> None:
    """Write the deterministic zip atomically: a half-written file never sits at `destination`."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent
    )
    try:
        with os.fdopen(handle, "wb") as raw:
            with zipfile.ZipFile(
                raw, "w", compression=ZIP_COMPRESSION, compresslevel=ZIP_COMPRESS_LEVEL, allowZip64=False
            ) as archive:
                for name in sorted(entries):
                    info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
                    info.create_system = ZIP_CREATE_SYSTEM
                    info.external_attr = ZIP_FILE_MODE << 16
                    info.compress_type = ZIP_COMPRESSION
                    archive.writestr(info, entries[name].read_bytes(), compresslevel=ZIP_COMPRESS_LEVEL)
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, destination)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def build(
    target: Target,
    out_dir: Path = DEFAULT_OUT,
    *,
    cache_dir: Path = DEFAULT_CACHE,
    use_cache: bool = True,
    package_dir: Path = PACKAGE_DIR,
) -> BuildResult:
    started = time.monotonic()
    deps_dir, cached = install_dependencies(target, cache_dir, use_cache)
    entries = collect_entries(deps_dir, package_dir)
    check_binaries(entries, target)
    destination = Path(out_dir).resolve() / target.zip_name
    write_zip(entries, destination)
    data = destination.read_bytes()
    digest = hashlib.sha256(data).digest()
    return BuildResult(
        path=destination,
        size=len(data),
        sha256_hex=digest.hex(),
        sha256_base64=base64.b64encode(digest).decode(),
        entries=len(entries),
        deps_cached=cached,
        seconds=time.monotonic() - started,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="local", help="the environment whose platform to build for (local)")
    parser.add_argument("--arch", choices=sorted(ELF_MACHINE), help="override the environment's architecture")
    parser.add_argument("--runtime", help="override the environment's Lambda runtime, e.g. python3.12")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the zip goes (dist/)")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=DEFAULT_CACHE,
        help="where installed dependencies are cached (build/lambda-deps/)",
    )
    parser.add_argument("--no-cache", action="store_true", help="reinstall the dependencies")
    args = parser.parse_args(argv)
    try:
        target = target_for(args.env, args.arch, args.runtime)
        result = build(target, args.out, cache_dir=args.cache_dir, use_cache=not args.no_cache)
    except (BuildError, ValueError) as error:  # ConfigError is a ValueError
        print(f"build_lambdas: {error}", file=sys.stderr)
        return 1
    print(result.report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
