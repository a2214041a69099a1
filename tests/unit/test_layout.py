"""The README's layout table is the tree: every directory of the package and every top-level
directory of the repository has a row, and no row names a directory that does not exist."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "layers" / "common" / "mysoulmate"
MAX_MODULE_LINES = 500


def table_paths() -> set[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    paths: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            paths.update(p.rstrip("/") for p in re.findall(r"`([^`]+)`", first_cell))
    return paths


def package_directories() -> set[str]:
    return {
        str(path.relative_to(ROOT))
        for path in PACKAGE.rglob("*")
        if path.is_dir() and path.name != "__pycache__" and any(path.glob("*.py"))
    } | {str(PACKAGE.relative_to(ROOT)), str((PACKAGE / "i18n" / "locales").relative_to(ROOT))}


def tracked_top_level_directories() -> set[str]:
    listed = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    return {name.split("/", 1)[0] for name in listed if "/" in name}


def test_every_package_directory_has_a_row() -> None:
    missing = package_directories() - table_paths()
    assert not missing, f"README layout table lacks: {sorted(missing)}"


def test_every_top_level_directory_has_a_row() -> None:
    missing = tracked_top_level_directories() - table_paths()
    assert not missing, f"README layout table lacks: {sorted(missing)}"


def test_every_row_names_something_that_exists() -> None:
    stale = {path for path in table_paths() if not (ROOT / path).exists()}
    assert not stale, f"README layout table names paths that do not exist: {sorted(stale)}"


def test_no_module_of_the_package_is_over_500_lines() -> None:
    long = {
        str(path.relative_to(PACKAGE)): lines
        for path in PACKAGE.rglob("*.py")
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"split these modules (DESIGN.md §4, ~500 lines): {long}"


def test_lambda_entry_points_stay_thin() -> None:
    fat = {
        str(path.relative_to(ROOT)): lines
        for path in (ROOT / "functions").glob("*/app.py")
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > 25
    }
    assert not fat, f"move the logic of these entry points into the package: {fat}"
