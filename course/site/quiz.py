"""The self-check question bank: load ``docs/data/quiz.yml``, validate it, render it for mkdocs-quiz.

Closed questions become mkdocs-quiz blocks (single-choice radios or an integer blank, checked in the
browser with immediate feedback); open questions become a prompt with a reveal box holding a model
answer, the explanation, links to the exercises that practise them and self-rating buttons.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from course.site.exercises import exercise_link

__all__ = ["Choice", "Question", "QuizBank", "QuizError", "load_bank", "matrix_tex", "render_quiz", "validate_bank"]

KINDS = ("choice", "number", "open")
_PLACEHOLDER = re.compile(r"<<(\w+)>>")


class QuizError(ValueError):
    """The question bank breaks one of its rules (the message names the question and the rule)."""


@dataclass(frozen=True)
class Choice:
    text: str
    correct: bool = False
    why: str = ""
    matrix: tuple[tuple[float, ...], ...] | None = None


@dataclass(frozen=True)
class Question:
    id: str
    part: str
    kind: str
    prompt: str
    explanation: str
    read: str
    choices: tuple[Choice, ...] = ()
    answer: object = None
    params: dict = field(default_factory=dict)
    practice: tuple[str, ...] = ()

    @property
    def number(self) -> int:
        return int(self.id[1:])

    @property
    def checkable(self) -> bool:
        """True for questions the browser checks (choice and number), False for reveal-only ones."""
        return self.kind != "open"

    def correct_index(self) -> int:
        """Index of the one correct choice."""
        return next(i for i, c in enumerate(self.choices) if c.correct)

    def filled_prompt(self) -> str:
        """The prompt with ``<<name>>`` replaced by its parameter (matrices as LaTeX)."""

        def sub(m: re.Match) -> str:
            value = self.params[m.group(1)]
            return (
                matrix_tex(value)
                if isinstance(value, list)
                else f"{value:g}"
                if isinstance(value, float)
                else str(value)
            )

        return _PLACEHOLDER.sub(sub, self.prompt)


@dataclass(frozen=True)
class QuizBank:
    parts: dict[str, str]
    questions: tuple[Question, ...]

    def by_id(self, qid: str) -> Question:
        return next(q for q in self.questions if q.id == qid)


def matrix_tex(rows) -> str:
    """A list of rows as a LaTeX bmatrix (for use inside $...$)."""

    def fmt(v) -> str:
        return f"{v:g}" if isinstance(v, float) else str(v)

    return r"\begin{bmatrix}" + r"\\".join(" & ".join(fmt(v) for v in row) for row in rows) + r"\end{bmatrix}"


def _choice(raw: dict, qid: str) -> Choice:
    if not isinstance(raw, dict) or ("text" in raw) == ("matrix" in raw):
        raise QuizError(f"{qid}: each choice needs exactly one of 'text' or 'matrix', got {raw!r}")
    matrix = tuple(tuple(row) for row in raw["matrix"]) if "matrix" in raw else None
    text = str(raw["text"]) if matrix is None else f"${matrix_tex(raw['matrix'])}$"
    return Choice(text=text, correct=bool(raw.get("correct", False)), why=str(raw.get("why", "")), matrix=matrix)


def load_bank(path: str | Path) -> QuizBank:
    """Read the YAML bank into :class:`QuizBank` (structure only; :func:`validate_bank` checks the rules)."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or "questions" not in data or "parts" not in data:
        raise QuizError(f"{path} must be a mapping with 'parts' and 'questions'")
    questions = []
    known = {f.name for f in Question.__dataclass_fields__.values()}
    for raw in data["questions"]:
        qid = raw.get("id", "?")
        unknown = set(raw) - known
        if unknown:
            raise QuizError(f"{qid}: unknown keys {sorted(unknown)}")
        questions.append(
            Question(
                id=str(qid),
                part=str(raw.get("part", "")),
                kind=str(raw.get("kind", "")),
                prompt=str(raw.get("prompt", "")).strip(),
                explanation=str(raw.get("explanation", "")).strip(),
                read=str(raw.get("read", "")),
                choices=tuple(_choice(c, qid) for c in raw.get("choices", [])),
                answer=raw.get("answer"),
                params=dict(raw.get("params") or {}),
                practice=tuple(raw.get("practice") or ()),
            )
        )
    return QuizBank(parts=dict(data["parts"]), questions=tuple(questions))


def validate_bank(bank: QuizBank, docs_dir: str | Path | None = None) -> list[str]:
    """Every broken rule as one message (empty when the bank is sound)."""
    problems: list[str] = []
    ids = [q.id for q in bank.questions]
    if ids != [f"q{i:02d}" for i in range(1, len(ids) + 1)]:
        problems.append(f"ids must be q01, q02, ... in order, got {ids}")
    for q in bank.questions:
        where = f"{q.id}:"
        if q.kind not in KINDS:
            problems.append(f"{where} kind {q.kind!r} is not one of {KINDS}")
        if q.part not in bank.parts:
            problems.append(f"{where} part {q.part!r} is not one of {sorted(bank.parts)}")
        if not q.prompt:
            problems.append(f"{where} has no prompt")
        if not q.explanation:
            problems.append(f"{where} has no explanation")
        if docs_dir is not None and not (Path(docs_dir) / q.read).is_file():
            problems.append(f"{where} 'read' names {q.read!r}, which is not a page under docs/")
        for target in q.practice:
            if exercise_link(target) is None:
                problems.append(f"{where} practice target {target!r} is neither an exercise nor a task id")
        missing = set(_PLACEHOLDER.findall(q.prompt)) - set(q.params)
        if missing:
            problems.append(f"{where} prompt uses <<{'>>, <<'.join(sorted(missing))}>> without params")
        if q.kind == "choice":
            n_correct = sum(c.correct for c in q.choices)
            if len(q.choices) < 2 or n_correct != 1:
                problems.append(
                    f"{where} needs >= 2 choices with exactly one correct, has {len(q.choices)} / {n_correct}"
                )
            if len({c.text for c in q.choices}) != len(q.choices):
                problems.append(f"{where} has duplicate choices")
            if any("\n" in c.text for c in q.choices):
                problems.append(f"{where} a choice spans several lines (mkdocs-quiz needs one line)")
        elif q.kind == "number":
            if not isinstance(q.answer, int) or isinstance(q.answer, bool):
                problems.append(f"{where} a number question needs an integer answer, got {q.answer!r}")
            if not q.params:
                problems.append(f"{where} a number question needs the params its answer is computed from")
        elif q.kind == "open":
            if not isinstance(q.answer, str) or not q.answer.strip():
                problems.append(f"{where} an open question needs a model answer")
            if not any(exercise_link(t) for t in q.practice):
                problems.append(f"{where} an open question must link to an exercise ('practice')")
        if q.kind != "open" and "---" in q.explanation.splitlines():
            problems.append(f"{where} a '---' line would end the mkdocs-quiz question early")
    return problems


# ---------------------------------------------------------------------------------------------- render


def _rel(target: str, page_uri: str) -> str:
    return posixpath.relpath(target, posixpath.dirname(page_uri) or ".")


def _links(q: Question, page_uri: str) -> str:
    parts = []
    for t in q.practice:
        href, title = exercise_link(t)
        parts.append(f"[{title}]({_rel(href, page_uri)})")
    read = f"Read: [the chapter page]({_rel(q.read, page_uri)})"
    return (f"Practise: {', '.join(parts)}. " if parts else "") + read + "."


def _indent(text: str, n: int = 4) -> str:
    pad = " " * n
    return "\n".join(pad + line if line.strip() else "" for line in text.splitlines())


def _render_closed(q: Question, page_uri: str) -> str:
    head = f"**Q{q.number}.** {q.filled_prompt()}"
    lines = ["<quiz>"]
    if q.kind == "choice":
        lines.append(head)
        for c in q.choices:
            lines.append(f"- [{'x' if c.correct else ' '}] {c.text}")
            if c.why:
                lines.append(f"> {c.why}")
        lines += ["", f"**Why.** {q.explanation}", "", _links(q, page_uri)]
    else:
        lines += [head, "", f"Answer: [[{q.answer}]]", "", "---", f"**Why.** {q.explanation}", "", _links(q, page_uri)]
    lines.append("</quiz>")
    return "\n".join(lines)


def _self_rating(q: Question) -> str:
    """Inline buttons to rate one's own answer after the reveal (counted by self-rating.js)."""
    return (
        f'<span class="self-rating" data-question="{q.id}">Did you have it? '
        '<button type="button" data-rating="had">I had it</button> '
        '<button type="button" data-rating="missed">I didn\'t</button></span>'
    )


def _render_open(q: Question, page_uri: str) -> str:
    body = (
        f"**Model answer.** {q.answer}\n\n**Why it matters.** {q.explanation}\n\n{_links(q, page_uri)}"
        f"\n\n{_self_rating(q)}"
    )
    return "\n".join(
        [
            f'!!! question open-question "Q{q.number} · open question"',
            "",
            _indent(q.filled_prompt()),
            "",
            '    ??? success "Reveal a model answer"',
            "",
            _indent(body, 8),
        ]
    )


def render_quiz(bank: QuizBank, page_uri: str = "quiz.md") -> str:
    """Markdown for all questions, grouped under one heading per part, in bank order."""
    out: list[str] = []
    current = None
    for q in bank.questions:
        if q.part != current:
            current = q.part
            out.append(f"## {bank.parts[q.part]}\n")
        out.append((_render_closed if q.checkable else _render_open)(q, page_uri) + "\n")
    return "\n".join(out)
