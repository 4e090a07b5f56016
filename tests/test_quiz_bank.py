"""The self-check question bank: 40 questions, sound structure, answers recomputed independently."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from course.site.exercises import exercise_link
from course.site.quiz import QuizError, load_bank, render_quiz, validate_bank

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
BANK = DOCS / "data" / "quiz.yml"


@pytest.fixture(scope="module")
def bank():
    return load_bank(BANK)


def receptive_field(layers):
    """Side of the input square behind one activation of the last layer (layers first to last)."""
    side = 1
    for ks, stride in reversed(layers):
        side = (side - 1) * stride + ks
    return side


#: Every number question's answer, computed here from its params by our own formula.
FORMULAS = {
    "q03": lambda p: int(np.sum(np.array(p["kernel"]) * np.array(p["window"]))),
    "q04": lambda p: int(np.sum(np.array(p["kernel"]) * np.zeros((3, 3)))),
    "q05": lambda p: next(pad for pad in range(10) if (p["n"] + 2 * pad - p["ks"]) // p["stride"] + 1 == p["n"]),
    "q06": lambda p: (p["n"] + 2 * p["padding"] - p["ks"]) // p["stride"] + 1,
    "q15": lambda p: p["grid"] ** 2 * (p["params_total"] - p["c_out"]),
    "q17": lambda p: receptive_field(p["layers"]),
    "q21": lambda p: p["c_out"] * (p["c_in"] * p["ks"] ** 2 + 1),
}


def test_bank_has_forty_questions_in_order(bank):
    assert [q.id for q in bank.questions] == [f"q{i:02d}" for i in range(1, 41)]
    assert validate_bank(bank, DOCS) == []


def test_every_question_has_a_prompt_and_an_explanation(bank):
    for q in bank.questions:
        assert len(q.prompt) > 20, q.id
        assert len(q.explanation) > 20, q.id


def test_choice_questions_have_exactly_one_correct_choice(bank):
    choice = [q for q in bank.questions if q.kind == "choice"]
    assert len(choice) >= 15
    for q in choice:
        assert sum(c.correct for c in q.choices) == 1, q.id
        assert len(q.choices) >= 3, q.id


def visible_length(text: str) -> int:
    """Characters a reader sees in a choice: no Markdown backticks, `$`, or LaTeX command names."""
    text = re.sub(r"\\(text|mathrm)\{([^}]*)\}", r"\2", text)
    text = re.sub(r"\\(begin|end)\{\w+\}|\\[A-Za-z]+|\\\\", " ", text)
    return len(re.sub(r"[`$]", "", text).strip())


def test_visible_length_ignores_markup():
    assert visible_length("`(64, 2)`") == len("(64, 2)")
    assert visible_length(r"$C_\text{in}$") == len("C_in")


def test_the_correct_choice_is_rarely_the_longest(bank):
    """Picking the longest option must not be a winning strategy (ties count as longest)."""
    choice = [q for q in bank.questions if q.kind == "choice"]
    longest = []
    for q in choice:
        lengths = [visible_length(c.text) for c in q.choices]
        if lengths[q.correct_index()] >= max(lengths):
            longest.append(q.id)
    assert len(longest) <= len(choice) / 3, f"the correct choice is the longest in {longest}"


def test_the_correct_choice_moves_around_in_the_bank(bank):
    """Even without the browser's shuffle, no position wins: every slot is used, none in over half."""
    positions = [q.correct_index() for q in bank.questions if q.kind == "choice"]
    counts = {i: positions.count(i) for i in range(4)}
    assert all(counts[i] >= 2 for i in range(4)), counts
    assert max(counts.values()) <= len(positions) / 2, counts


def _quiz_plugin_options() -> dict:
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)  # mkdocs.yml's !!python tags
    config = yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=Loader)
    return next(p["mkdocs_quiz"] for p in config["plugins"] if isinstance(p, dict) and "mkdocs_quiz" in p)


def test_the_site_shuffles_options_and_allows_one_attempt():
    options = _quiz_plugin_options()
    assert options["shuffle_answers"] is True
    assert options["disable_after_submit"] is True and options["show_correct"] is True
    # The installed plugin still honours the option: it marks the quiz and its script shuffles it.
    import mkdocs_quiz

    package = Path(mkdocs_quiz.__file__).parent
    assert 'data-shuffle-answers="true"' in (package / "plugin.py").read_text(encoding="utf-8")
    script = (package / "js" / "quiz.js").read_text(encoding="utf-8")
    assert 'quiz.hasAttribute("data-shuffle-answers")' in script and "shuffleAnswers(fieldset)" in script


@pytest.mark.parametrize("qid", sorted(FORMULAS))
def test_number_answers_match_their_formula(bank, qid):
    q = bank.by_id(qid)
    assert q.kind == "number"
    assert q.answer == FORMULAS[qid](q.params)


def test_every_number_question_has_a_formula(bank):
    assert {q.id for q in bank.questions if q.kind == "number"} == set(FORMULAS)


def test_q15_parameter_count_is_the_layers(bank):
    p = bank.by_id("q15").params
    assert p["params_total"] == p["c_out"] * p["c_in"] * p["ks"] ** 2 + p["c_out"] == 1168
    assert FORMULAS["q15"](p) == 14 * 14 * (296 - 8) == 56_448  # same as the layer before: the chapter's point


def test_open_questions_link_to_exercise_pages(bank):
    opened = [q for q in bank.questions if q.kind == "open"]
    assert len(opened) >= 10
    for q in opened:
        assert q.answer and len(q.answer) > 40, q.id
        links = [exercise_link(t) for t in q.practice]
        assert links and None not in links, f"{q.id} links to something that is no exercise or task"
        for href, _ in links:
            page = href.partition("#")[0]
            assert (DOCS / page).is_file(), href
            assert page.startswith("exercises/")


def test_every_question_points_to_an_existing_chapter_page(bank):
    for q in bank.questions:
        assert q.read.startswith("chapter/") and (DOCS / q.read).is_file(), q.id


def test_top_edge_choice_really_detects_top_edges(bank):
    q = bank.by_id("q02")
    patch = np.array([[0, 0, 0], [0, 0, 0], [255, 255, 255]])  # background above, ink below
    scores = [float(np.sum(np.array(c.matrix) * patch)) for c in q.choices]
    assert np.argmax(scores) == q.correct_index()
    assert q.choices[q.correct_index()].matrix == ((-1, -1, -1), (0, 0, 0), (1, 1, 1))


def _shape(text: str, sizes: dict) -> tuple[int, ...]:
    return tuple(sizes[s.strip()] for s in text.split(","))


def test_conv2d_shape_choice_is_the_only_one_pytorch_accepts(bank):
    import torch
    import torch.nn.functional as F

    sizes = {"N": 2, r"C_\text{in}": 3, r"C_\text{out}": 5, "H": 8, "W": 8, "k_s": 3}
    q = bank.by_id("q08")
    accepted = []
    for c in q.choices:
        inp, weight = re.findall(r"\$\(([^$]*)\)\$", c.text)
        try:
            out = F.conv2d(torch.zeros(_shape(inp, sizes)), torch.zeros(_shape(weight, sizes)))
        except RuntimeError:
            continue
        accepted.append(c)
        assert out.shape == (2, 5, 6, 6)
    assert accepted == [q.choices[q.correct_index()]]


def test_flatten_and_batchnorm_facts_hold_in_pytorch(bank):
    import torch
    from torch import nn

    assert nn.Flatten()(torch.zeros(64, 2, 1, 1)).shape == (64, 2)
    assert "`(64, 2)`" in bank.by_id("q13").choices[bank.by_id("q13").correct_index()].text
    bn = nn.BatchNorm2d(64)
    assert [n for n, _ in bn.named_parameters()] == ["weight", "bias"]
    assert sum(p.numel() for p in bn.parameters()) == 128
    assert "128 trainable parameters" in bank.by_id("q38").explanation


def test_colour_image_choice_matches_a_real_photo_tensor(bank):
    from PIL import Image
    from torchvision.transforms.functional import pil_to_tensor

    from course.data import bear_path

    with Image.open(bear_path()) as im:
        t = pil_to_tensor(im.convert("RGB"))
    assert t.shape == (3, im.height, im.width)
    assert "(3, height, width)" in bank.by_id("q20").choices[bank.by_id("q20").correct_index()].text


def test_rendering_gives_one_block_per_question(bank):
    md = render_quiz(bank, "quiz.md")
    closed = [q for q in bank.questions if q.checkable]
    assert md.count("<quiz>") == md.count("</quiz>") == len(closed)
    assert md.count("open-question") == len(bank.questions) - len(closed)
    assert "<<" not in md
    for q in bank.questions:
        assert f"Q{q.number}." in md or f"Q{q.number} ·" in md
    for q in closed:
        if q.kind == "number":
            assert f"[[{q.answer}]]" in md
    blocks = re.findall(r"<quiz>(.*?)</quiz>", md, re.S)
    for block, q in zip(blocks, closed, strict=True):
        assert block.count("- [x]") == (1 if q.kind == "choice" else 0), q.id


def test_every_open_question_can_be_self_rated(bank):
    md = render_quiz(bank, "quiz.md")
    rated = re.findall(r'<span class="self-rating" data-question="(q\d\d)">', md)
    assert rated == [q.id for q in bank.questions if q.kind == "open"]
    assert md.count('data-rating="had"') == md.count('data-rating="missed"') == len(rated)
    page = (DOCS / "quiz.md").read_text(encoding="utf-8")
    assert 'id="self-rating-summary"' in page and "assets/javascripts/self-rating.js" in page
    assert (DOCS / "assets" / "javascripts" / "self-rating.js").is_file()


def test_rendered_links_are_relative_to_the_page(bank):
    md = render_quiz(bank, "quiz.md")
    assert "(exercises/02_strides_padding.md#ex2_receptive_field)" in md
    assert "(chapter/07-receptive-fields.md)" in md
    nested = render_quiz(bank, "sub/quiz.md")
    assert "(../exercises/02_strides_padding.md#ex2_receptive_field)" in nested


def test_validation_reports_broken_rules(tmp_path, bank):
    text = BANK.read_text(encoding="utf-8")
    broken = text.replace("        correct: true\n", "", 1)  # q02 loses its correct choice
    broken = broken.replace("    practice: [ex1_map_kernel]\n", "    practice: [nowhere]\n", 1)  # q07
    path = tmp_path / "quiz.yml"
    path.write_text(broken, encoding="utf-8")
    problems = validate_bank(load_bank(path), DOCS)
    assert any(p.startswith("q02:") and "exactly one correct" in p for p in problems)
    assert any(p.startswith("q07:") and "'nowhere'" in p for p in problems)
    assert any(p.startswith("q07:") and "must link to an exercise" in p for p in problems)


def test_unknown_keys_are_rejected(tmp_path):
    text = BANK.read_text(encoding="utf-8").replace("    part: kernels\n", "    part: kernels\n    colour: red\n", 1)
    path = tmp_path / "quiz.yml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(QuizError, match="q01: unknown keys"):
        load_bank(path)
