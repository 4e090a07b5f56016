"""``course release``: ``solutions/`` (nbgrader sources) -> ``exercises/`` (student release).

A pipeline of small steps, composed in ``RELEASE_STEPS``:

1. nbgrader's own ``generate_assignment`` converter (no database) clears solutions, outputs and hidden tests,
   and puts the cells of ``solutions/header.ipynb`` first (nbgrader's ``IncludeHeaderFooter``: a "generated —
   do not edit" note); nbconvert's ``ClearMetadataPreprocessor``, run last, keeps only the metadata nbgrader
   needs to autograde (cell metadata ``nbgrader``, the kernelspec);
2. ``normalize`` removes execution counts and outputs and numbers the cells, so output is byte-stable.

``find_leaks`` is the independent check that nothing of the solution reached a released notebook.
``check_release`` is the maintainers' byte-exact check (CI); ``check_working_copy`` is the same check for a
learner's checkout, where answers, outputs and added cells in ``exercises/`` are the learner's work, not drift.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import nbformat

from course.files import atomic_path
from course.notebooks import nbgrader_meta, read_notebook

__all__ = [
    "RELEASE_STEPS",
    "check_release",
    "check_working_copy",
    "compare_work",
    "find_leaks",
    "generate_release",
    "release",
]

HEADER = "header.ipynb"  # in solutions/: the cells every released notebook starts with
HEADER_MARK = "course-release-header"
_KEEP_NB_META = ("kernelspec", "language_info")
_MARKERS = (
    "BEGIN SOLUTION",
    "END SOLUTION",
    "BEGIN HIDDEN TESTS",
    "END HIDDEN TESTS",
    "BEGIN MARK SCHEME",
    "END MARK SCHEME",
)


def normalize(nb, source_rel: str):
    """No outputs, no execution counts, nbformat 4.5 cell ids derived from position (stable across runs)."""
    nb.nbformat, nb.nbformat_minor = 4, 5
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:03d}"
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nb


RELEASE_STEPS: list[Callable] = [normalize]


def _nbgrader_generate(root: Path, assignment: str, out_dir: Path) -> Path:
    """Run nbgrader's GenerateAssignment converter in-process, without a gradebook database."""
    from nbconvert.preprocessors import ClearMetadataPreprocessor
    from nbgrader.converters import GenerateAssignment
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Config

    cfg = Config()
    cfg.CourseDirectory.root = str(root)
    cfg.CourseDirectory.source_directory = "solutions"
    cfg.CourseDirectory.release_directory = str(out_dir)
    cfg.CourseDirectory.assignment_id = assignment
    cfg.GenerateAssignment.no_database = True
    cfg.SaveCells.enabled = False
    cfg.BaseConverter.force = True
    header = root / "solutions" / HEADER
    if header.is_file():
        cfg.IncludeHeaderFooter.header = str(header)
    defaults = GenerateAssignment.class_traits()["preprocessors"].default()
    cfg.GenerateAssignment.preprocessors = [*defaults, ClearMetadataPreprocessor]
    cfg.ClearMetadataPreprocessor.enabled = True
    cfg.ClearMetadataPreprocessor.preserve_cell_metadata_mask = {"nbgrader"}
    cfg.ClearMetadataPreprocessor.preserve_nb_metadata_mask = set(_KEEP_NB_META)
    log = logging.getLogger("course.release.nbgrader")
    log.setLevel(logging.WARNING)
    GenerateAssignment(coursedir=CourseDirectory(config=cfg), config=cfg, log=log).start()
    return out_dir / assignment


def generate_release(root: str | os.PathLike, out: str | os.PathLike, assignments=None) -> list[Path]:
    """Write the release of ``assignments`` (default: all in solutions/) under ``out``; return the notebooks."""
    root, out = Path(root).resolve(), Path(out).resolve()
    names = list(assignments or _assignments(root))
    written = []
    with tempfile.TemporaryDirectory(prefix="course-release-") as tmp:
        for name in names:
            src_dir = root / "solutions" / name
            if not src_dir.is_dir():
                raise FileNotFoundError(f"no source assignment {src_dir}; assignments are folders under solutions/")
            gen_dir = _nbgrader_generate(root, name, Path(tmp))
            for gen in sorted(gen_dir.glob("*.ipynb")):
                rel = f"solutions/{name}/{gen.name}"
                nb = read_notebook(gen)
                for step in RELEASE_STEPS:
                    nb = step(nb, rel)
                target = out / name / gen.name
                with atomic_path(target) as tmp_target:
                    nbformat.write(nb, str(tmp_target))
                written.append(target)
            for extra in sorted(p for p in gen_dir.iterdir() if p.suffix != ".ipynb"):
                dest = out / name / extra.name
                if extra.is_dir():
                    shutil.copytree(extra, dest, dirs_exist_ok=True)
                else:
                    shutil.copy2(extra, dest)
    return written


def _assignments(root: Path) -> list[str]:
    names = sorted(p.name for p in (root / "solutions").iterdir() if p.is_dir() and any(p.glob("*.ipynb")))
    if not names:
        raise FileNotFoundError(f"{root / 'solutions'} holds no assignment folders with notebooks")
    return names


def release(root: str | os.PathLike = ".", assignments=None) -> list[Path]:
    """Regenerate ``exercises/`` from ``solutions/`` in place."""
    return generate_release(root, Path(root) / "exercises", assignments)


def check_release(root: str | os.PathLike = ".") -> list[str]:
    """Problems that make ``exercises/`` differ from a fresh release, or leak: [] when all is well."""
    root = Path(root).resolve()
    problems = []
    with tempfile.TemporaryDirectory(prefix="course-check-") as tmp:
        fresh = {p.relative_to(tmp): p for p in generate_release(root, tmp)}
        committed = {p.relative_to(root / "exercises"): p for p in (root / "exercises").glob("*/*.ipynb")}
        for rel in sorted(set(fresh) | set(committed)):
            if rel not in committed:
                problems.append(f"exercises/{rel} is missing: run `course release`")
            elif rel not in fresh:
                problems.append(f"exercises/{rel} has no source in solutions/: delete it or add the source")
            elif fresh[rel].read_bytes() != committed[rel].read_bytes():
                problems.append(f"exercises/{rel} is out of date with solutions/: run `course release`")
    for rel, nb_path in sorted(committed.items()):
        src = root / "solutions" / rel
        if src.is_file():
            problems += [f"exercises/{rel}: {leak}" for leak in find_leaks(read_notebook(src), read_notebook(nb_path))]
    return problems


def compare_work(fresh, work) -> tuple[str, str]:
    """How a learner's copy ``work`` of a released notebook differs from a ``fresh`` release: (kind, detail).

    Kinds: ``"work"`` (only answer cells, outputs, execution counts, metadata or added cells differ: the
    learner's work), ``"structure"`` (the graded cells differ: grade ids, points or flags), ``"stale"`` (given
    cells differ and the notebook holds no work: the release is older than solutions/) and ``"edited"``
    (given cells differ in a notebook that also holds work: cannot tell a learner's edit from a stale release).
    Cells are matched by their ids (``cell-NNN`` in a release; JupyterLab keeps them).
    """

    def graded(nb):
        keys = ("grade_id", "points", "solution", "grade", "locked")
        return [(c.cell_type, *(nbgrader_meta(c).get(k) for k in keys)) for c in nb.cells if nbgrader_meta(c)]

    want, got = graded(fresh), graded(work)
    if want != got:
        first = next((i for i, (a, b) in enumerate(zip(want, got, strict=False)) if a != b), min(len(want), len(got)))
        expected = want[first][1] if first < len(want) else None
        found = got[first][1] if first < len(got) else None
        if expected == found:
            return "structure", f"{expected!r} has other points or flags"
        return "structure", f"graded cell {first + 1} should be {expected!r}, found {found!r}"
    by_id = {c.get("id"): c for c in work.cells}
    fresh_ids = {c.get("id") for c in fresh.cells}
    changed, answered = [], False
    for i, cell in enumerate(fresh.cells):
        mine = by_id.get(cell.get("id"))
        if nbgrader_meta(cell).get("solution"):
            answered |= mine is not None and mine.source != cell.source
        elif mine is None or mine.source != cell.source or mine.cell_type != cell.cell_type:
            changed.append(i)
    ran = any(c.cell_type == "code" and (c.get("outputs") or c.get("execution_count")) for c in work.cells)
    added = any(c.get("id") not in fresh_ids for c in work.cells)
    if not changed:
        return "work", ""
    cells = ", ".join(map(str, changed[:5])) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
    return ("edited" if answered or ran or added else "stale"), f"cell {cells}"


def check_working_copy(root: str | os.PathLike = ".") -> tuple[list[str], list[str]]:
    """``check_release`` for a learner's checkout: (problems, notes); problems say which command fixes them.

    A learner works in ``exercises/`` (the header cell says so), so answers, outputs and added cells are not
    drift, and the leak check, which would flag every correct answer, applies only to untouched notebooks.
    Without ``solutions/`` (a student copy of the course) there is nothing to compare: one note, no problems.
    """
    root = Path(root).resolve()
    if not (root / "solutions").is_dir():
        return [], ["no solutions/ in this copy of the course: the release check was skipped"]
    problems, notes, mine = [], [], []
    with tempfile.TemporaryDirectory(prefix="course-check-") as tmp:
        fresh = {p.relative_to(tmp): p for p in generate_release(root, tmp)}
        work = {p.relative_to(root / "exercises"): p for p in (root / "exercises").glob("*/*.ipynb")}
        for rel in sorted(set(fresh) | set(work)):
            name, where = rel.parts[0], f"exercises/{rel.as_posix()}"
            if rel not in work:
                problems.append(f"{where} is missing: run `course release {name}`")
                continue
            if rel not in fresh:
                problems.append(f"{where} has no source in solutions/: delete it or add the source")
                continue
            source = root / "solutions" / rel
            if fresh[rel].read_bytes() == work[rel].read_bytes():
                leaks = find_leaks(read_notebook(source), read_notebook(work[rel]))
                fix = f"fix solutions/{rel.as_posix()}, then run `course release {name}`"
                problems += [f"{where}: {leak} ({fix})" for leak in leaks]
                continue
            kind, detail = compare_work(read_notebook(fresh[rel]), read_notebook(work[rel]))
            if kind == "work":
                mine.append(where)
            elif kind == "structure":
                problems.append(
                    f"{where}: its graded cells differ from solutions/ ({detail}); copy your answers elsewhere, "
                    f"then run `course release {name}` to restore the notebook"
                )
            elif kind == "stale":
                problems.append(
                    f"{where} is out of date with solutions/ ({detail}) and holds no work yet: "
                    f"run `course release {name}`"
                )
            else:
                notes.append(
                    f"{where} differs from solutions/ outside your answers ({detail}); kept as it is. If you did "
                    f"not change those cells, copy your answers elsewhere and run `course release {name}`"
                )
    if mine:
        notes.insert(0, f"{len(mine)} notebook(s) hold your work: {', '.join(mine)}")
    return problems, notes


def _solution_lines(source_nb) -> tuple[set[str], set[str]]:
    """(lines inside solution regions, lines outside them) over the whole source notebook, stripped."""
    inside, outside = set(), set()
    for cell in source_nb.cells:
        in_region = False
        for line in cell.source.splitlines():
            s = line.strip()
            if "BEGIN SOLUTION" in s or "BEGIN HIDDEN TESTS" in s:
                in_region = True
            elif "END SOLUTION" in s or "END HIDDEN TESTS" in s:
                in_region = False
            elif s:
                (inside if in_region else outside).add(s)
    return inside, outside


def find_leaks(source_nb, release_nb) -> list[str]:
    """Everything in ``release_nb`` that a student must not see: solution lines, hidden tests, outputs, metadata."""
    leaks = []
    inside, outside = _solution_lines(source_nb)
    secret = {s for s in inside - outside if len(s) > 3 and not s.startswith("#")}
    for i, cell in enumerate(release_nb.cells):
        where = f"cell {i}"
        for marker in _MARKERS:
            if marker in cell.source:
                leaks.append(f"{where} contains the marker '{marker}'")
        for line in cell.source.splitlines():
            if line.strip() in secret:
                leaks.append(f"{where} contains a solution line: {line.strip()[:60]!r}")
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None):
            leaks.append(f"{where} has outputs or an execution count")
        extra = set(cell.get("metadata", {})) - {"nbgrader", HEADER_MARK}
        if extra:
            leaks.append(f"{where} carries extra metadata {sorted(extra)}")
        meta = nbgrader_meta(cell)
        if meta.get("solution") and cell.cell_type == "code" and "raise NotImplementedError()" not in cell.source:
            leaks.append(f"{where} ({meta.get('grade_id')}) is a solution cell without the unanswered stub")
    extra_nb = set(release_nb.metadata) - set(_KEEP_NB_META)
    if extra_nb:
        leaks.append(f"notebook metadata carries extra keys {sorted(extra_nb)}")
    src_tests = {
        nbgrader_meta(c).get("grade_id"): c.source
        for c in source_nb.cells
        if nbgrader_meta(c).get("grade") and not nbgrader_meta(c).get("solution")
    }
    rel_tests = {
        nbgrader_meta(c).get("grade_id"): c.source
        for c in release_nb.cells
        if nbgrader_meta(c).get("grade") and not nbgrader_meta(c).get("solution")
    }
    if set(src_tests) != set(rel_tests):
        leaks.append(f"visible test cells differ: source {sorted(src_tests)} vs release {sorted(rel_tests)}")
    return leaks
