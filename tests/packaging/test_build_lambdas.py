"""scripts/build_lambdas.py: real builds of the Lambda zip, checked for determinism, content and platform.

The first run downloads the locked wheels from PyPI (uv caches them); later runs reuse build/lambda-deps/.
"""

from __future__ import annotations

import base64
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from classwire_infra.paths import ROOT
from scripts import build_lambdas as bl

HANDLERS = ("authorizer", "connect", "disconnect", "message")
FORBIDDEN_PARTS = ("__pycache__",)

pytestmark = pytest.mark.slow


ARM64 = bl.Target("arm64", "python3.13")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _elf_machine(data: bytes) -> int:
    assert data[:4] == b"\x7fELF"
    return int.from_bytes(data[18:20], "little" if data[5] == 1 else "big")


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """arm64 built twice (the second from a fresh dependency install) and the local target once."""
    base = tmp_path_factory.mktemp("builds")
    first = bl.build(ARM64, base / "a")
    second = bl.build(ARM64, base / "b", cache_dir=base / "fresh-cache")
    local = bl.build(bl.target_for("local"), base / "local")
    return {"arm64": first, "arm64-fresh": second, "local": local}


@pytest.fixture(scope="module")
def arm64(builds):
    return builds["arm64"]


@pytest.fixture(scope="module", params=["arm64", "local"])
def any_build(request, builds):
    return builds[request.param]


def test_two_builds_are_byte_identical(builds):
    first, second = builds["arm64"], builds["arm64-fresh"]
    assert first.path != second.path
    assert not second.deps_cached  # a fresh install, not a copy of the first build's cache
    assert first.sha256_hex == second.sha256_hex == _sha256(first.path) == _sha256(second.path)
    assert first.path.read_bytes() == second.path.read_bytes()


def test_reported_hashes_are_the_files(any_build):
    digest = hashlib.sha256(any_build.path.read_bytes()).digest()
    assert any_build.sha256_base64 == base64.b64encode(digest).decode()  # Terraform's source_code_hash
    assert any_build.size == any_build.path.stat().st_size


def test_zip_names_are_the_configs(builds):
    from classwire_infra.config import load

    assert Path(load("dev").lambda_zip).name == builds["arm64"].path.name
    assert Path(load("local").lambda_zip).name == builds["local"].path.name
    assert bl.target_for("dev") == ARM64
    assert bl.target_for("dev", "x86_64", "python3.12").zip_name == "classwire-lambda-x86_64-python3.12.zip"


def test_contains_the_package_and_its_dependencies(any_build):
    names = set(zipfile.ZipFile(any_build.path).namelist())
    assert "classwire/handlers/message.py" in names
    assert "classwire/classroom_log.lua" in names
    sources = {
        p.relative_to(ROOT / "lambdas").as_posix()
        for p in (ROOT / "lambdas" / "classwire").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }
    assert sources <= names
    for top in ("jwt/", "redis/", "aws_lambda_powertools/", "urllib3/", "cryptography/"):
        assert any(name.startswith(top) for name in names), top


def test_leaves_out_machine_dependent_files(any_build):
    for name in zipfile.ZipFile(any_build.path).namelist():
        parts = name.split("/")
        assert "__pycache__" not in parts, name
        assert not name.endswith((".pyc", ".pyo")), name
        assert parts[-1] not in ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json"), name
        assert parts[0] not in ("bin", ".lock"), name


def test_entries_are_sorted_and_fixed(any_build):
    with zipfile.ZipFile(any_build.path) as archive:
        infos = archive.infolist()
        assert archive.comment == b""
    names = [info.filename for info in infos]
    assert names == sorted(names)
    assert len(names) == len(set(names))
    for info in infos:
        assert not info.is_dir(), info.filename
        assert info.date_time == (1980, 1, 1, 0, 0, 0), info.filename
        assert info.external_attr == 0o100644 << 16, info.filename
        assert info.create_system == 3, info.filename
        assert info.compress_type == zipfile.ZIP_DEFLATED, info.filename
        assert info.extra == b"", info.filename


def test_arm64_binaries_are_aarch64(arm64):
    with zipfile.ZipFile(arm64.path) as archive:
        rust = archive.read("cryptography/hazmat/bindings/_rust.abi3.so")
        assert _elf_machine(rust) == 183  # EM_AARCH64
        libraries = [n for n in archive.namelist() if n.endswith(".so")]
        assert "_cffi_backend.cpython-313-aarch64-linux-gnu.so" in libraries
        assert {_elf_machine(archive.read(n)) for n in libraries} == {183}


def test_local_binaries_are_this_machines(builds):
    expected = 62 if platform.machine().lower() in ("x86_64", "amd64") else 183
    with zipfile.ZipFile(builds["local"].path) as archive:
        libraries = [n for n in archive.namelist() if n.endswith(".so")]
        assert libraries
        assert {_elf_machine(archive.read(n)) for n in libraries} == {expected}


def test_local_zip_imports_every_handler_on_its_own(builds, tmp_path):
    extracted = tmp_path / "task"
    zipfile.ZipFile(builds["local"].path).extractall(extracted)
    code = "\n".join(
        [
            "import sys",
            f"sys.path.insert(0, {str(extracted)!r})",
            "import importlib, pathlib",
            *[f"importlib.import_module('classwire.handlers.{name}').handler" for name in HANDLERS],
            "import classwire, jwt, jwt.algorithms, redis, aws_lambda_powertools, cryptography",
            f"root = pathlib.Path({str(extracted)!r})",
            "for module in (classwire, jwt, redis, aws_lambda_powertools, cryptography):",
            "    assert root in pathlib.Path(module.__file__).parents, module.__file__",
            "assert jwt.algorithms.has_crypto",
            "from classwire import classroom_store",
            "assert classroom_store._load_scripts()  # reads classroom_log.lua next to the module",
            "print('ok')",
        ]
    )
    # -I -S: no site-packages, no PYTHONPATH, no user site: only the stdlib and the extracted zip.
    env = {"PATH": os.environ.get("PATH", ""), "AWS_DEFAULT_REGION": "us-east-1"}
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_source_mtimes_modes_and_caches_do_not_change_the_zip(arm64, tmp_path):
    package = tmp_path / "src" / "classwire"
    shutil.copytree(
        ROOT / "lambdas" / "classwire", package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    later = time.time() + 86_400
    for path in package.rglob("*"):
        os.utime(path, (later, later))
    (package / "classroom_log.lua").chmod(0o755)
    (package / "handlers" / "message.py").chmod(0o600)
    (package / "handlers" / "__pycache__").mkdir()
    (package / "handlers" / "__pycache__" / "message.cpython-311.pyc").write_bytes(b"junk")
    (package / "stale.pyc").write_bytes(b"junk")
    (package / ".message.py.swp").write_bytes(b"editor")
    rebuilt = bl.build(ARM64, tmp_path / "out", package_dir=package)
    assert rebuilt.deps_cached
    assert rebuilt.sha256_hex == arm64.sha256_hex


def test_a_source_change_changes_the_zip(arm64, tmp_path):
    package = tmp_path / "src" / "classwire"
    shutil.copytree(
        ROOT / "lambdas" / "classwire", package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    with open(package / "handlers" / "message.py", "a") as file:
        file.write("\n# changed\n")
    assert bl.build(ARM64, tmp_path / "out", package_dir=package).sha256_hex != arm64.sha256_hex


def test_cli_builds_the_environments_zip(arm64, tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_lambdas.py"), "--env", "dev", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    built = tmp_path / arm64.path.name
    assert _sha256(built) == arm64.sha256_hex
    assert arm64.sha256_hex in result.stdout and arm64.sha256_base64 in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == [built.name]  # no temporary file left behind


def test_cli_rejects_an_unknown_environment(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_lambdas.py"), "--env", "nope", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 1
    assert "nope" in result.stderr
    assert not any(tmp_path.iterdir())


def test_a_failed_write_keeps_the_previous_zip(tmp_path):
    destination = tmp_path / "package.zip"
    destination.write_bytes(b"previous")
    source = tmp_path / "a.py"
    source.write_text("x = 1\n")
    with pytest.raises(FileNotFoundError):
        bl.write_zip({"a.py": source, "b.py": tmp_path / "missing.py"}, destination)
    assert destination.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.py", "package.zip"]


def test_binaries_for_another_platform_are_refused(arm64):
    deps, cached = bl.install_dependencies(ARM64, bl.DEFAULT_CACHE)
    assert cached
    entries = bl.collect_entries(deps)
    with pytest.raises(bl.BuildError, match="ELF machine 183"):
        bl.check_binaries(entries, bl.Target("x86_64", "python3.13"))
    with pytest.raises(bl.BuildError, match="cpython-313"):
        bl.check_binaries(entries, bl.Target("arm64", "python3.12"))
