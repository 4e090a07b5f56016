"""graders/reference: the committed artifacts verify, tampering is caught, and a CPU retrain agrees."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from course.reference import BUDGETS, RUNS, train_reference, verify_reference

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT / "graders" / "reference"


@pytest.fixture(scope="module")
def manifest():
    return json.loads((REF / "manifest.json").read_text())


def test_committed_reference_matches_its_manifest():
    assert verify_reference(REF) == []


def test_manifest_covers_every_run_next_to_the_book(manifest):
    assert set(manifest["runs"]) == {r.name for r in RUNS}
    for run in RUNS:
        row = manifest["runs"][run.name]
        assert len(row["epochs_table"]) == run.epochs
        assert row["book_accuracy"] == pytest.approx(run.book_accuracy, abs=5e-5)  # R1's 0.990186 was stored rounded
    env = manifest["environment"]
    assert env["device"] in ("cpu", "cuda") or env["device"].startswith("cuda")
    assert set(manifest["data_sha256"]) == {"x_train", "y_train", "x_test", "y_test"}
    assert manifest["runs"]["r1_sample"]["params"] == 6722
    assert manifest["runs"]["r6_final"]["params"] == 30542
    assert manifest["runs"]["r6_final"]["final_accuracy"] >= 0.99
    spread = manifest["runs"]["r6_final"]["seed_spread"]
    assert spread["seeds"][0] == manifest["seed"] and len(spread["seeds"]) == len(set(spread["seeds"])) == 5
    assert spread["accuracy"][0] == manifest["runs"]["r6_final"]["final_accuracy"]
    assert spread["min"] <= spread["mean"] <= spread["max"] and spread["mean"] >= 0.99
    assert set(manifest["budgets"]) == {b.name for b in BUDGETS}
    for budget in BUDGETS:
        entry = manifest["budgets"][budget.name]
        assert entry["device"] == "cpu" and entry["threads"] == 1 and entry["n_train"] == budget.n_train
        assert 0.9 <= entry["accuracy"] <= 1


def test_final_weights_load_safely_into_the_bn_network(manifest):
    from course.reference import build_model, load_references

    refs = load_references(ROOT)
    model = build_model(next(r for r in RUNS if r.name == "r6_final"), refs)
    state = torch.load(REF / "weights" / "r6_final.pt", weights_only=True)
    model.load_state_dict(state)
    from course.data import load_mnist

    x, y = load_mnist().tensors("test", dtype="float")
    x = (x[:2000] - 0.1307) / 0.3081  # the DataLoaders' normalization (train mean/std)
    model.eval()
    with torch.no_grad():
        acc = (model(x).argmax(1) == y[:2000]).float().mean().item()
    assert acc >= 0.98


def test_tampering_is_caught(tmp_path):
    copy = tmp_path / "reference"
    shutil.copytree(REF, copy)
    w = copy / "weights" / "r6_final.pt"
    data = bytearray(w.read_bytes())
    data[len(data) // 2] ^= 0xFF
    w.write_bytes(bytes(data))
    (copy / "stats" / "r5_batchnorm.npz").unlink()
    (copy / "notes.txt").write_text("unlisted")
    problems = "\n".join(verify_reference(copy))
    assert "weights/r6_final.pt has sha256" in problems
    assert "stats/r5_batchnorm.npz is listed in the manifest but missing" in problems
    assert "notes.txt is not listed" in problems
    (copy / "manifest.json").write_text("{not json")
    assert "not readable JSON" in verify_reference(copy)[0]


@pytest.mark.slow
def test_cpu_retrain_agrees_with_the_manifest(manifest, tmp_path):
    """A short retrain (1-epoch runs, the grader budget) lands within the manifest's tolerances; schedules match."""
    names = ["r4_one_cycle", "r5_batchnorm"]
    budgets = [b.name for b in BUDGETS]
    fresh = train_reference(
        tmp_path / "ref", device="cpu", seed=manifest["seed"], only=names + budgets, root=ROOT, progress=False
    )
    tol = manifest["tolerances"]
    for name in budgets:  # the graders compare students with this number: it must be what a CPU rerun gives
        assert abs(fresh["budgets"][name]["accuracy"] - manifest["budgets"][name]["accuracy"]) <= tol["accuracy_abs"]
    with np.load(REF / "traces.npz") as ref_traces, np.load(tmp_path / "ref" / "traces.npz") as new_traces:
        for name in names:
            ours, theirs = fresh["runs"][name], manifest["runs"][name]
            assert abs(ours["final_accuracy"] - theirs["final_accuracy"]) <= tol["accuracy_abs"], name
            for key in ("lr", "mom"):
                np.testing.assert_allclose(
                    new_traces[f"{name}.{key}"], ref_traces[f"{name}.{key}"], rtol=tol["trace_rtol"]
                )
    assert verify_reference(tmp_path / "ref") == []
