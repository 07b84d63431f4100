"""Imports point one way: ui and cli -> services (workspace, evaluation, reader_study, jobs, sharing,
studio) -> the paper's core (the flat medart modules); only the ui imports gradio; only the
stores speak SQL. Read from the source, so a new import against the grain fails here."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("workspace", "evaluation", "reader_study", "jobs", "sharing", "studio")
TOP = ("cli", "ui")
STORES = ("medart/workspace/store.py", "medart/workspace/migrations.py", "medart/reader_study/store.py")


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def layer(path: Path) -> str:
    parts = path.relative_to(ROOT).parts
    if parts[0] == "captioning":
        return "captioning"
    return parts[1] if len(parts) > 2 else "core"


def test_imports_point_down_only():
    wrong = []
    for path in [*(ROOT / "medart").rglob("*.py"), *(ROOT / "captioning").rglob("*.py")]:
        if path.name == "__main__.py":  # `python -m medart`: the entry point runs the CLI
            continue
        where = layer(path)
        for name in imports(path):
            target = name.split(".")
            if target[0] == "gradio" and where != "ui":
                wrong.append(f"{path.relative_to(ROOT)} imports gradio")
            if target[0] != "medart" or len(target) < 2:
                continue
            to = target[1]
            if where in ("core", "captioning") and to in SERVICES + TOP:
                wrong.append(f"{path.relative_to(ROOT)} ({where}) imports {name}")
            if where in SERVICES and to in TOP:
                wrong.append(f"{path.relative_to(ROOT)} ({where}) imports {name}")
            if where == "captioning" and to not in ("constants",):
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not wrong, "\n".join(sorted(wrong))


def test_only_the_stores_speak_sql():
    speaking = []
    for path in (ROOT / "medart").rglob("*.py"):
        text = path.read_text()
        if any(word in text for word in (".execute(", ".executemany(", "import sqlite3")):
            speaking.append(path.relative_to(ROOT).as_posix())
    assert sorted(speaking) == sorted(STORES)
