"""The `course` command line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from course import __version__
from course.cli import main


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"course {__version__}"
    out = subprocess.run([sys.executable, "-m", "course.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "data" in out.stdout and "start" in out.stdout


def test_data_where_and_verify(capsys):
    assert main(["data", "where"]) == 0
    assert "MNIST from" in capsys.readouterr().out
    assert main(["data", "verify"]) == 0
    out = capsys.readouterr().out
    assert "60,000 train / 10,000 test" in out and "12,396 train / 2,038 valid" in out
    assert "OK: all data verified" in out


def test_missing_data_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_DATA", str(tmp_path))
    assert main(["data", "verify"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("course: error: $COURSE_DATA") and "Traceback" not in err


@pytest.mark.slow
def test_prepare_writes_both_layouts_and_verify_checks_pixels(capsys):
    assert main(["data", "prepare", "--quiet"]) == 0
    assert main(["data", "verify", "--layouts"]) == 0
    out = capsys.readouterr().out
    assert out.count("every PNG decodes pixel-identical") == 2
