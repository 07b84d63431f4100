"""The project installs as a package (pyproject.toml): every package of the tree is listed, the
assets go along, `medart` is a console script, and no module edits sys.path to find the others."""

import re
import tomllib
from pathlib import Path

from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_package_of_the_tree_is_installed():
    listed = set(PROJECT["tool"]["setuptools"]["packages"])
    found = set(find_packages(str(ROOT), include=["medart", "medart.*", "captioning", "captioning.*"]))
    assert found and listed - {"medart_assets", "medart_assets.demo"} == found
    assert PROJECT["tool"]["setuptools"]["package-dir"] == {"medart_assets": "assets"}
    data = PROJECT["tool"]["setuptools"]["package-data"]
    shipped = {p.relative_to(ROOT / "assets").as_posix() for p in (ROOT / "assets").rglob("*")
               if p.is_file() and p.parts[-2] != "screenshots" and p.suffix != ".py"}
    patterns = [*data["medart_assets"], *(f"demo/{g}" for g in data["medart_assets.demo"])]
    assert all(any(Path(f).match(g) for g in patterns) for f in shipped), "an asset the app reads is not shipped"


def test_console_script_and_dependencies():
    assert PROJECT["project"]["scripts"] == {"medart": "medart.cli:main"}
    assert PROJECT["tool"]["setuptools"]["dynamic"]["dependencies"] == {"file": ["requirements.txt"]}
    pinned = (ROOT / "requirements.txt").read_text()
    for name in ("psutil", "filelock", "httpx", "scipy", "peft", "pytest-xdist"):  # xdist: addopts runs -n
        assert re.search(rf"^{name}==\S+$", pinned, re.MULTILINE), name


def test_no_module_edits_sys_path():
    for folder in ("medart", "captioning", "benchmarks"):
        for path in (ROOT / folder).rglob("*.py"):
            assert "sys.path" not in path.read_text(), path
    assert "sys.path" not in (ROOT / "app.py").read_text()


def test_the_readme_opens_with_two_commands_in_a_virtual_environment():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("```bash\n", 1)[1].split("```", 1)[0].strip().splitlines()
    assert len(block) == 2
    install, tests = block
    assert install.startswith("python3 -m venv .venv && . .venv/bin/activate && ")
    assert "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in install
    assert install.endswith("python app.py") and tests == ". .venv/bin/activate && python -m pytest -q"
    assert "keeps running" in text and "in another terminal" in text


def test_dry_runs_written_by_the_app_are_not_committed():
    import subprocess

    done = subprocess.run(["git", "check-ignore", "-q", "hub-dry-runs/polyps/README.md"], cwd=ROOT)
    assert done.returncode == 0
