"""The ``course`` command: thin verbs over library functions."""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

from course import __version__

__all__ = ["main"]


def _print_table(rows: dict) -> None:
    width = max(map(len, rows))
    for k, v in rows.items():
        print(f"  {k:<{width}}  {v}")


def cmd_data_where(args) -> int:
    import os

    from course.data import ENV_DATA, cache_dir, fastai_data_dir, locate_mnist

    print(f"  ${ENV_DATA:<13} {os.environ.get(ENV_DATA) or '(not set)'}")
    print(f"  {'cache':<14} {cache_dir()}")
    print(f"  {'fastai data':<14} {fastai_data_dir()}")
    print(f"  {'MNIST from':<14} {locate_mnist()}")
    return 0


def cmd_data_prepare(args) -> int:
    from course.layouts import LAYOUTS, data_summary, layout_path

    t0 = time.perf_counter()
    names = LAYOUTS if args.layout == "all" else (args.layout,)
    for name in names:
        dest = None if args.dest is None else Path(args.dest) / name
        print(f"{name}: {layout_path(name, dest, progress=not args.quiet)}")
    print(f"data ready in {time.perf_counter() - t0:.1f} s")
    _print_table(data_summary())
    return 0


def cmd_data_verify(args) -> int:
    from course.layouts import data_summary

    _print_table(data_summary(verify_layouts=args.layouts))
    print("OK: all data verified")
    return 0


def cmd_start(args) -> int:
    """Prepare and verify every data set, then say how to start working."""
    from course.layouts import LAYOUTS, data_summary, layout_path

    for name in LAYOUTS:
        layout_path(name, progress=not args.quiet)
    _print_table(data_summary())
    print("\nReady. Next: `course --help` lists every command.")
    return 0


def cmd_up(args) -> int:
    """Prepare data and site, then run JupyterLab and the site on 127.0.0.1 until Ctrl-C (course.up)."""
    from course.up import UpOptions, up

    opts = UpOptions(
        root=Path(args.root),
        notebooks=args.notebooks,
        site_dir=args.site_dir,
        lab=not args.no_lab,
        site=not args.no_site,
        lab_port=args.lab_port,
        site_port=args.site_port,
        release_check=not args.no_release_check,
        progress=not args.quiet,
        timeout=args.timeout,
        open_browser=args.open,
    )
    return up(opts)


def cmd_release(args) -> int:
    """Regenerate exercises/ from solutions/, or with --check only report what is out of sync or leaks."""
    from course.release import check_release, release

    root = Path(args.root)
    if args.check:
        problems = check_release(root)
        for p in problems:
            print(f"  {p}")
        print("release check: " + (f"{len(problems)} problem(s)" if problems else "exercises/ is in sync, no leaks"))
        return 1 if problems else 0
    for path in release(root, args.assignments or None):
        print(f"  wrote {path.relative_to(root.resolve())}")
    return 0


def cmd_check(args) -> int:
    """Run the visible tests of one exercise notebook with pytest (the self-check plugin)."""
    import pytest

    from course.exercises import resolve_exercise

    folder = resolve_exercise(args.exercise, args.root)
    return int(pytest.main([str(folder), "-q", "--no-header", "-p", "no:cacheprovider", *args.pytest_args]))


def cmd_reference_train(args) -> int:
    from course.reference import train_reference

    manifest = train_reference(args.out, args.device, args.seed, args.only.split(",") if args.only else None)
    print(f"\nwrote {args.out} in {manifest['wall_seconds']:.0f} s on {manifest['environment']['device_name']}")
    print(f"{'run':<20}{'book':>8}{'ours':>8}{'seconds':>9}")
    for name, run in manifest["runs"].items():
        book = f"{run['book_accuracy']:.2%}" if run["book_accuracy"] is not None else "-"
        print(f"{name:<20}{book:>8}{run['final_accuracy']:>8.2%}{run['seconds']:>9.1f}")
        if "seed_spread" in run:
            sp = run["seed_spread"]
            spread = f"mean {sp['mean']:.2%}, std {sp['std']:.2%}, {sp['min']:.2%}-{sp['max']:.2%}"
            print(f"  {len(sp['seeds'])} seeds: {spread}")
    for name, budget in manifest.get("budgets", {}).items():
        print(f"{name:<20}{'grader':>8}{budget['accuracy']:>8.2%}{budget['seconds']:>9.1f}")
    return 0


def cmd_reference_verify(args) -> int:
    from course.reference import verify_reference

    problems = verify_reference(args.dir)
    for p in problems:
        print(f"  {p}")
    print(
        f"reference check: {len(problems)} problem(s)"
        if problems
        else f"reference check: {args.dir} matches its manifest"
    )
    return 1 if problems else 0


def cmd_grade(args) -> int:
    """Grade submissions with the hidden graders; results.json per submission and a class grades.csv."""
    from course.grading.cluster import ClusterLost, WorkerRefused, on_cluster
    from course.grading.grade import grade_all

    if args.jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {args.jobs}")
    ignored: list[str] = []
    try:
        results = grade_all(
            args.submissions,
            args.out,
            jobs=args.jobs,
            root=args.root,
            force=args.force,
            progress=not args.quiet,
            cell_timeout=args.cell_timeout,
            isolation="auto" if args.allow_weak_isolation else "bwrap",
            ignored=ignored,
            backend=on_cluster(args.scheduler) if args.scheduler else None,
        )
    except (ClusterLost, WorkerRefused, ConnectionError) as exc:  # --scheduler: say why, the same command resumes
        print(f"course: error: {exc}", file=sys.stderr)
        return 1
    for r in sorted(results, key=lambda r: (r["extra"]["student"], r["extra"]["notebook"])):
        print(f"  {r['extra']['student']:<20} {r['extra']['notebook']:<22} {r['score']:>5g} / {r['max_score']:g}")
    if ignored:
        shown = ", ".join(ignored[:5]) + (f" and {len(ignored) - 5} more" if len(ignored) > 5 else "")
        print(f"ignored {len(ignored)} notebooks outside the <student>/<assignment>/<notebook>.ipynb layout: {shown}")
    weaker = sorted({w for r in results for w in r["extra"].get("weaker", [])})
    for w in weaker:
        print(f"note: weaker isolation: {w}")
    errors = [r for r in results if r["extra"].get("error")]
    if errors:
        print(f"{len(errors)} submissions could not be graded (see their results.json); run the same command again")
    print(f"wrote {len(results)} results.json and {Path(args.out) / 'grades.csv'}")
    if args.gradebook:
        from course.grading.gradebook import write_gradebook

        n = write_gradebook(results, args.gradebook)
        print(f"wrote {n} grades and the hidden feedback into the nbgrader gradebook {args.gradebook}")
    return 0


def cmd_hub(args) -> int:
    """Run a class on JupyterHub from a roster (see course/hub.py), or remove the OS users it created."""
    from course.hub import HubLayout, load_roster, remove_users, run

    layout = HubLayout(Path(args.state).resolve(), Path(args.root).resolve())
    if args.remove_users:
        gone = remove_users(load_roster(args.roster, layout.root).everyone)
        print(f"removed {len(gone)} OS users: {', '.join(gone) or 'none'} (their homes stay in {layout.homes})")
        return 0
    return run(layout, args.roster, port=args.port, api_port=args.api_port, proxy_api_port=args.proxy_api_port)


def _command(subparsers, name: str, about: str, func) -> argparse.ArgumentParser:
    """A subcommand ``name`` that runs ``func(args)``."""
    parser = subparsers.add_parser(name, help=about)
    parser.set_defaults(func=func)
    return parser


def _root_option(parser: argparse.ArgumentParser, holding: str) -> None:
    parser.add_argument("--root", default=".", help=f"course root holding {holding} (default: .)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="course", description="Deep Dive into Convolutions: course tools.")
    p.add_argument("--version", action="version", version=f"course {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    start = _command(sub, "start", "prepare and verify all data, print a summary", cmd_start)
    start.add_argument("--quiet", action="store_true", help="no progress bars")

    upc = sub.add_parser(
        "up",
        help="prepare data and site, then run JupyterLab and the site on 127.0.0.1 until Ctrl-C",
        description="Prepare and verify the data, check exercises/ against solutions/, build the site if it is "
        "stale, then run JupyterLab (the course kernel, nbgrader's student tools, opened on exercises/) and the "
        "site on 127.0.0.1 and print both URLs. Ctrl-C stops both.",
    )
    _root_option(upc, "exercises/, solutions/, docs/")
    upc.add_argument("--notebooks", metavar="DIR", help="folder JupyterLab opens (default: ROOT/exercises)")
    upc.add_argument("--site-dir", metavar="DIR", help="where the site is built and served from (default: ROOT/site)")
    upc.add_argument(
        "--lab-port", type=int, help="JupyterLab's port (default: 8888 or the next free one; 0: any free port)"
    )
    upc.add_argument(
        "--site-port",
        type=int,
        help="the site's port (default: 8000, the port of site_url in mkdocs.yml, when free, else any; 0: any)",
    )
    upc.add_argument("--no-lab", action="store_true", help="serve the site only")
    upc.add_argument("--no-site", action="store_true", help="run JupyterLab only (no site build)")
    upc.add_argument(
        "--no-release-check", action="store_true", help="start even when exercises/ is out of sync with solutions/"
    )
    upc.add_argument("--open", action="store_true", help="open JupyterLab in the default web browser when ready")
    upc.add_argument(
        "--timeout", type=float, default=180.0, help="seconds to wait for JupyterLab to answer (default 180)"
    )
    upc.add_argument("--quiet", action="store_true", help="no progress bars")
    upc.set_defaults(func=cmd_up)

    data = sub.add_parser("data", help="find, prepare and verify MNIST, MNIST_SAMPLE and the colour photo")
    dsub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    _command(dsub, "where", "show where data is read from and written to", cmd_data_where)
    prep = _command(dsub, "prepare", "write fastai's PNG folder layouts into the cache (once)", cmd_data_prepare)
    prep.add_argument(
        "--layout",
        choices=["all", "mnist_png", "mnist_sample"],
        default="all",
        help="which layout to write (default: all)",
    )
    prep.add_argument("--dest", help="parent folder for the layouts (default: the cache, $COURSE_CACHE)")
    prep.add_argument("--quiet", action="store_true", help="no progress bars")
    ver = _command(
        dsub, "verify", "check arrays (shapes, dtypes, label counts) and, with --layouts, PNGs", cmd_data_verify
    )
    ver.add_argument("--layouts", action="store_true", help="also decode every written PNG and compare pixels")

    rel = _command(
        sub, "release", "regenerate exercises/ from solutions/ with nbgrader generate_assignment", cmd_release
    )
    rel.add_argument("assignments", nargs="*", help="assignment folders under solutions/ (default: all)")
    rel.add_argument("--check", action="store_true", help="only check that exercises/ is in sync and leak-free")
    _root_option(rel, "solutions/ and exercises/")

    chk = _command(sub, "check", "self-check: run an exercise notebook's visible tests with pytest", cmd_check)
    chk.add_argument("exercise", help="ex3, 03_first_cnn, a folder or a notebook path")
    chk.add_argument("pytest_args", nargs=argparse.REMAINDER, help="extra pytest arguments")
    _root_option(chk, "exercises/")

    ref = sub.add_parser("reference", help="train or verify the reference solution artifacts (graders/reference)")
    rsub = ref.add_subparsers(dest="reference_command", metavar="ACTION", required=True)
    rtrain = _command(
        rsub, "train", "train the chapter's runs with the solutions' implementations", cmd_reference_train
    )
    rtrain.add_argument("--device", choices=["cuda", "cpu"], help="default: cuda when available, else cpu")
    rtrain.add_argument("--out", default="graders/reference", help="artifact folder (default: graders/reference)")
    rtrain.add_argument("--seed", type=int, default=42, help="seed for every run (default 42)")
    rtrain.add_argument(
        "--only", help="comma-separated run or grader-budget names, e.g. r6_final,ex6_short_run (default: all)"
    )
    rver = _command(
        rsub, "verify", "check the artifacts against their manifest (hashes, loadability)", cmd_reference_verify
    )
    rver.add_argument("--dir", default="graders/reference", help="artifact folder (default: graders/reference)")

    grade = _command(sub, "grade", "grade submissions with the hidden graders (sandboxed, in parallel)", cmd_grade)
    grade.add_argument("submissions", nargs="+", help="notebooks, folders of them, or nbgrader's submitted/ folder")
    grade.add_argument(
        "--jobs", type=int, default=max(1, (os.cpu_count() or 2)), help="parallel graders here (not with --scheduler)"
    )
    grade.add_argument("--out", default="graded", help="output folder for results.json files and grades.csv")
    grade.add_argument("--force", action="store_true", help="regrade even when an up-to-date result exists")
    _root_option(grade, "graders/ and solutions/")
    grade.add_argument("--quiet", action="store_true", help="no progress bar")
    grade.add_argument(
        "--cell-timeout",
        type=float,
        default=60.0,
        help="seconds one answer cell or one check's call may run (default 60)",
    )
    grade.add_argument(
        "--allow-weak-isolation",
        action="store_true",
        help="grade even where bwrap does not work (per-process limits only: student code can then read and write "
        "what this user can); without it, grading refuses to start there",
    )
    grade.add_argument(
        "--scheduler",
        metavar="tcp://HOST:PORT",
        default=os.environ.get("COURSE_SCHEDULER") or None,
        help="grade on this dask.distributed cluster instead of here (default: $COURSE_SCHEDULER; unset: here, "
        "with --jobs); its workers need bwrap and this commit of the course (docs/instructor.md, 'Grading on a "
        "cluster')",
    )
    grade.add_argument(
        "--gradebook",
        metavar="URL",
        help="also write the scores into this nbgrader gradebook (e.g. sqlite:///gradebook.db, made by nbgrader "
        "generate_assignment or autograde), overriding the autograded scores of the visible tests",
    )

    hub = _command(sub, "hub", "run a class on JupyterHub: one OS user and sandboxed server per person (root)", cmd_hub)
    hub.add_argument("--roster", required=True, help="YAML file: students, instructors, graders (docs/instructor.md)")
    hub.add_argument("--state", default=".hub", help="folder for the hub's state, homes and exchange (default .hub)")
    _root_option(hub, "solutions/ and exercises/")
    hub.add_argument("--port", type=int, default=8000, help="public port on 127.0.0.1 (default 8000)")
    hub.add_argument("--api-port", type=int, default=8081, help="the hub's internal API port (default 8081)")
    hub.add_argument("--proxy-api-port", type=int, default=8001, help="the proxy's API port (default 8001)")
    hub.add_argument("--remove-users", action="store_true", help="delete the roster's OS users instead of starting")
    return p


def main(argv: list[str] | None = None) -> int:
    from course.data import DataIntegrityError, DataNotFoundError

    args = build_parser().parse_args(argv)
    warnings.filterwarnings("ignore", message=".*torch.jit.script.* is deprecated", category=FutureWarning)
    try:
        return args.func(args)
    except (DataNotFoundError, DataIntegrityError, FileExistsError, FileNotFoundError, PermissionError,
            ValueError) as exc:  # fmt: skip
        print(f"course: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
