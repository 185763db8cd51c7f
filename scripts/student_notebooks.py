"""Write the student version of every course notebook: the solutions removed.

``python scripts/student_notebooks.py [--out build/student-notebooks]`` (``make student-notebooks``)
reads ``notebooks/NN_*.py`` (the jupytext sources) and writes ``NN_*.ipynb`` without any cell
tagged ``solution``; the exercises and the self-check questions stay, and a line under the
exercises says the solutions are with the instructor. An instructor hands out the folder (or
uploads it to the course's LMS) and keeps the full notebooks.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jupytext
import nbformat

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = "solution"
NOTE = "*The solutions are not part of this version of the notebook; ask your instructor.*"


def student_version(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of ``notebook`` without its solution cells (and without outputs)."""
    cells = []
    for cell in notebook.cells:
        if SOLUTION in cell.metadata.get("tags", []):
            continue
        cell = nbformat.from_dict(dict(cell))
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        if cell.cell_type == "markdown" and cell.source.startswith("## Exercises"):
            cell.source = cell.source.replace("The solutions are in the collapsed cells below (click to expand).",
                                              "").rstrip() + "\n\n" + NOTE
        cells.append(cell)
    student = nbformat.from_dict(dict(notebook))
    student.cells = cells
    return student


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "build" / "student-notebooks"),
                        help="folder for the student notebooks (default: build/student-notebooks)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for source in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py")):
        notebook = jupytext.read(source)
        target = out / f"{source.stem}.ipynb"
        nbformat.write(student_version(notebook), target)
        written.append(target)
    print(f"wrote {len(written)} student notebooks (solutions removed) to {out}")
    return written


if __name__ == "__main__":
    main()
