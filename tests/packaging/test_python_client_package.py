"""The Python client installs on its own (the platform's services use it without this repository)."""

from __future__ import annotations

import subprocess
import zipfile

import pytest

from classwire_infra.paths import ROOT
from scripts.build_lambdas import uv_binary

pytestmark = pytest.mark.slow


def test_the_client_wheel_holds_only_the_client_and_works_in_a_fresh_environment(tmp_path):
    uv = uv_binary()
    subprocess.run(
        [uv, "build", "--wheel", "--out-dir", str(tmp_path), str(ROOT / "clients" / "python")],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("classwire_client-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"classwire_client", "classwire_client-0.1.0.dist-info"}
    assert "classwire_client/py.typed" in names

    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "-q", "--python", "3.11", str(venv)], check=True, capture_output=True)
    subprocess.run(
        [uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), str(wheel)],
        check=True,
        capture_output=True,
    )
    # Outside the repository, with nothing of it on the path: only the wheel and its dependency.
    probe = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-I",
            "-c",
            "import classwire_client, sys; print(classwire_client.__file__)",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert str(venv) in probe.stdout
