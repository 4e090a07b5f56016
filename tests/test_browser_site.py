"""The built site in headless Chromium: clean page loads, math, the quiz, dark mode, figures.

Debian's Chromium (`apt-get install chromium`), driven by Playwright; the site is built with its
`site_url` set to the origin of a local static server, so Material's instant navigation is active.
Set COURSE_SCREENSHOTS=<folder> to keep a screenshot of every page. The site build and the browser
are session fixtures in conftest.py, shared with tests/test_browser_playground.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from browser import Watch, screenshot

from course.site import figures
from course.site.quiz import load_bank

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
PAGES = [
    "index.html",
    "chapter/index.html",
    *(f"chapter/{p.stem}.html" for p in sorted((ROOT / "docs/chapter").glob("[0-9]*.md"))),
    "playground.html",
    "quiz.html",
    "exercises/index.html",
    *(f"exercises/{p.stem}.html" for p in sorted((ROOT / "docs/exercises").glob("0*.md"))),
    "instructor.html",
]


@pytest.fixture()
def tab(chromium, served):
    origin, _ = served
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, color_scheme="light")
    page = context.new_page()
    watch = Watch(page, ("http", "127.0.0.1"))
    yield page, watch, origin
    context.close()


def math_state(page) -> dict:
    """Wait for MathJax to finish, then describe how each formula rendered."""
    page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise")
    page.evaluate("() => MathJax.startup.promise")
    return page.evaluate(
        """() => {
          const items = [...document.querySelectorAll('article .arithmatex')];
          return {
            formulas: items.length,
            containers: items.map(el => el.querySelectorAll('mjx-container').length),
            invisible: items.filter(el => {
              const c = el.querySelector('mjx-container');
              if (!c) return true;
              const box = c.getBoundingClientRect();
              return box.width === 0 || box.height === 0 || getComputedStyle(c).visibility === 'hidden';
            }).length,
            raw: items.filter(el => !el.querySelector('mjx-container')).length,
          };
        }"""
    )


def assert_math_rendered(page, at_least: int):
    state = math_state(page)
    assert state["formulas"] >= at_least
    assert state["containers"] == [1] * state["formulas"], "each formula must be typeset exactly once"
    assert state["invisible"] == 0 and state["raw"] == 0


def test_every_page_loads_cleanly_with_its_figures(tab):
    page, watch, origin = tab
    figure_count = 0
    for name in PAGES:
        page.goto(f"{origin}/{name}", wait_until="networkidle")
        assert page.locator("article h1").first.is_visible(), name
        images = page.evaluate(
            "() => [...document.querySelectorAll('article img')].map(i => [i.getAttribute('src'), i.naturalWidth])"
        )
        assert all(width > 0 for _, width in images), (name, images)
        figure_count += page.locator("article figure.course-figure img").count()
        screenshot(page, name)
    watch.assert_clean()
    # every drawable figure is on some page (run figures also once their artifacts exist)
    drawable = [s for s in figures.FIGURES.values() if not any(n.startswith("ref:") for n in s.needs)]
    assert figure_count >= len(drawable)


def test_math_renders_once_and_survives_instant_navigation(tab):
    page, watch, origin = tab
    page.goto(f"{origin}/chapter/04-strides-padding.html", wait_until="networkidle")
    assert_math_rendered(page, at_least=4)
    page.evaluate("() => { window.__sameDocument = true; }")

    page.click("nav.md-nav--primary a[href$='05-conv-as-matmul.html']")
    page.wait_for_url("**/05-conv-as-matmul.html")
    page.wait_for_selector("article h1:has-text('matrix product')")
    assert page.evaluate("() => window.__sameDocument === true"), "instant navigation did not happen"
    assert_math_rendered(page, at_least=5)

    page.click("nav.md-nav--primary a[href$='04-strides-padding.html']")
    page.wait_for_url("**/04-strides-padding.html")
    page.wait_for_selector("article h1:has-text('Strides and padding')")
    assert page.evaluate("() => window.__sameDocument === true")
    assert_math_rendered(page, at_least=4)
    watch.assert_clean()


def open_quiz(page, origin, instantly: bool = False):
    """Open the quiz page directly, or from the home page through instant navigation."""
    if instantly:
        page.goto(f"{origin}/index.html", wait_until="networkidle")
        page.evaluate("() => { window.__sameDocument = true; }")
        page.click("nav.md-nav--primary a[href$='quiz.html']")
        page.wait_for_url("**/quiz.html")
    else:
        page.goto(f"{origin}/quiz.html", wait_until="networkidle")
    page.wait_for_function("() => document.querySelector('#quiz-results .quiz-results-total')?.textContent === '24'")


def answer(quiz, q, correct: bool = True):
    if q.kind == "choice":
        idx = q.correct_index() if correct else next(i for i, c in enumerate(q.choices) if not c.correct)
        quiz.locator(f"input[name='answer'][value='{idx}']").check()
    else:
        quiz.locator("input.quiz-blank-input").fill(str(q.answer if correct else q.answer + 1))
        quiz.locator("button.quiz-button[type='submit']").click()


@pytest.fixture(scope="module")
def closed_questions():
    return [q for q in load_bank(ROOT / "docs" / "data" / "quiz.yml").questions if q.checkable]


def test_answering_every_question_correctly_marks_all_correct(tab, closed_questions):
    page, watch, origin = tab
    open_quiz(page, origin, instantly=True)
    assert page.evaluate("() => window.__sameDocument === true")
    quizzes = page.locator("article div.quiz")
    assert quizzes.count() == len(closed_questions) == 24
    for k, q in enumerate(closed_questions):
        answer(quizzes.nth(k), q)
    results = page.locator("#quiz-results")
    assert results.locator(".quiz-results-correct").text_content() == "24"
    assert results.locator(".quiz-results-score-value").text_content() == "100%"
    for k in range(quizzes.count()):
        quiz = quizzes.nth(k)
        assert quiz.locator(".quiz-feedback .quiz-feedback-item.correct").count() == 1
        assert quiz.locator(".quiz-feedback-item.incorrect").count() == 0
        assert quiz.locator("section.content").is_visible()  # the explanation opens
    screenshot(page, "quiz-all-correct")
    watch.assert_clean()


def test_a_wrong_answer_shows_feedback_and_the_explanation(tab, closed_questions):
    page, watch, origin = tab
    open_quiz(page, origin)
    quizzes = page.locator("article div.quiz")
    q02 = next(k for k, q in enumerate(closed_questions) if q.id == "q02")
    answer(quizzes.nth(q02), closed_questions[q02], correct=False)
    quiz = quizzes.nth(q02)
    feedback = quiz.locator(".quiz-feedback")
    assert feedback.is_visible()
    assert feedback.locator(".quiz-feedback-item.incorrect").count() == 1
    assert "bottom" in feedback.text_content()  # the chosen answer's own explanation of why it is wrong
    assert quiz.locator("section.content").is_visible()
    assert "Why." in quiz.locator("section.content").text_content()
    # One attempt: no "try again", the options are locked and the right one is marked.
    assert "try again" not in feedback.text_content().lower()
    assert not quiz.locator(".quiz-reset-button").is_visible()
    assert quiz.locator("input[name='answer']:not([disabled])").count() == 0
    assert quiz.locator("fieldset > div.correct").count() == 1
    wrong_label = quiz.locator("fieldset > div.wrong label")
    assert "line-through" not in wrong_label.evaluate("el => getComputedStyle(el).textDecorationLine")
    q06 = next(k for k, q in enumerate(closed_questions) if q.id == "q06")
    answer(quizzes.nth(q06), closed_questions[q06], correct=False)
    assert quizzes.nth(q06).locator("input.quiz-blank-input.wrong").count() == 1
    assert quizzes.nth(q06).locator(".quiz-feedback-item.incorrect").is_visible()
    assert page.locator("#quiz-results .quiz-results-correct").text_content() == "0"
    watch.assert_clean()


def test_choice_options_are_shuffled_in_the_page(tab, closed_questions):
    page, watch, origin = tab
    open_quiz(page, origin)
    quizzes = page.locator("article div.quiz")
    orders = []
    for k, q in enumerate(closed_questions):
        if q.kind == "choice":
            assert quizzes.nth(k).get_attribute("data-shuffle-answers") == "true"
            values = quizzes.nth(k).locator("input[name='answer']").evaluate_all("els => els.map(e => +e.value)")
            assert sorted(values) == list(range(len(q.choices)))
            orders.append(values)
    # 17 questions with 3-4 options each: all of them staying in bank order by chance is ~1e-22.
    assert any(values != sorted(values) for values in orders)
    watch.assert_clean()


def test_quiz_buttons_have_room_and_feedback_is_readable_in_dark_mode(tab, closed_questions):
    page, watch, origin = tab
    open_quiz(page, origin)
    quizzes = page.locator("article div.quiz")
    q06 = next(k for k, q in enumerate(closed_questions) if q.id == "q06")
    button = quizzes.nth(q06).locator("button.quiz-button[type='submit']")
    assert float(button.evaluate("el => parseFloat(getComputedStyle(el).marginRight)")) > 0
    page.evaluate("() => document.body.setAttribute('data-md-color-scheme', 'slate')")
    q02 = next(k for k, q in enumerate(closed_questions) if q.id == "q02")
    answer(quizzes.nth(q02), closed_questions[q02], correct=False)
    colours = quizzes.nth(q02).evaluate(
        """quiz => ['div.wrong label', 'div.correct label'].map(
             s => getComputedStyle(quiz.querySelector('fieldset > ' + s)).color)"""
    )
    assert colours == ["rgb(255, 138, 128)", "rgb(105, 240, 174)"]  # light red and green on slate
    screenshot(page, "quiz-wrong-answer-dark")
    watch.assert_clean()


def test_progress_survives_a_reload(tab, closed_questions):
    page, watch, origin = tab
    open_quiz(page, origin)
    quizzes = page.locator("article div.quiz")
    for k in range(3):
        answer(quizzes.nth(k), closed_questions[k])
    answer(quizzes.nth(3), closed_questions[3], correct=False)
    page.reload(wait_until="networkidle")
    page.wait_for_function("() => document.querySelector('#quiz-results .quiz-results-answered')?.textContent === '4'")
    assert page.locator("#quiz-results .quiz-results-correct").text_content() == "3"
    first = closed_questions[0]
    restored = quizzes.nth(0).locator(f"input[name='answer'][value='{first.correct_index()}']")
    assert restored.is_checked()
    watch.assert_clean()


def test_open_questions_reveal_a_model_answer_with_an_exercise_link(tab):
    page, watch, origin = tab
    open_quiz(page, origin)
    card = page.locator("article .admonition.open-question").first
    details = card.locator("details")
    assert not details.locator("p").first.is_visible()
    details.locator("summary").click()
    assert details.locator("p").first.is_visible()
    link = details.locator("a[href*='exercises/01_kernels.html#ex1_edge_kernels']")
    assert link.count() == 1
    link.click()
    # Material's navigation.tracking may still rewrite the old page's hash while instant navigation
    # runs, so wait for the page, not for the exact fragment, then check where it scrolled to.
    page.wait_for_url(re.compile(r".*/exercises/01_kernels\.html(#.*)?$"))
    page.locator("#ex1_edge_kernels").wait_for(state="visible")
    in_view = """() => {
        const top = document.querySelector('#ex1_edge_kernels').getBoundingClientRect().top;
        return window.scrollY > 0 && top >= 0 && top < window.innerHeight / 2;
    }"""
    page.wait_for_function(in_view)
    assert "Edge kernels" in page.locator("#ex1_edge_kernels").text_content()
    watch.assert_clean()


def test_self_rating_open_questions_counts_towards_forty(tab, closed_questions):
    page, watch, origin = tab
    open_quiz(page, origin, instantly=True)  # Material must re-run the page's script after navigation
    summary = page.locator("#self-rating-summary")
    assert summary.locator(".all-total").text_content() == "40"
    assert summary.locator(".open-total").text_content() == "16"
    cards = page.locator("article .admonition.open-question")
    for k, rating in [(0, "had"), (1, "missed")]:
        cards.nth(k).locator("details summary").click()
        cards.nth(k).locator(f".self-rating button[data-rating='{rating}']").click()
    answer(page.locator("article div.quiz").nth(0), closed_questions[0])
    page.wait_for_function("() => document.querySelector('#self-rating-summary .all-done').textContent === '3'")
    assert summary.locator(".open-rated").text_content() == "2"
    assert summary.locator(".open-had").text_content() == "1"
    assert summary.locator(".all-good").text_content() == "2"
    page.reload(wait_until="networkidle")
    page.wait_for_function("() => document.querySelector('#self-rating-summary .all-done').textContent === '3'")
    pressed = cards.nth(0).locator(".self-rating button[data-rating='had']")
    assert pressed.get_attribute("aria-pressed") == "true"
    screenshot(page, "quiz-self-rating")
    watch.assert_clean()


def test_dark_mode_toggles_and_persists(tab):
    page, watch, origin = tab
    page.goto(f"{origin}/chapter/05-conv-as-matmul.html", wait_until="networkidle")
    scheme = "() => document.body.getAttribute('data-md-color-scheme')"
    assert page.evaluate(scheme) == "default"
    page.click("form[data-md-component='palette'] label:visible")
    page.wait_for_function(f"() => ({scheme})() === 'slate'")
    background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    assert background != "rgb(255, 255, 255)"
    page.reload(wait_until="networkidle")
    assert page.evaluate(scheme) == "slate"
    assert_math_rendered(page, at_least=5)
    screenshot(page, "conv-as-matmul-dark")
    page.click("form[data-md-component='palette'] label:visible")
    page.wait_for_function(f"() => ({scheme})() === 'default'")
    watch.assert_clean()


def test_the_file_build_works_without_a_server(chromium, served):
    _, site = served
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    watch = Watch(page, ("file", None))
    try:
        page.goto((site / "index.html").as_uri(), wait_until="load")
        assert page.locator("article h1").first.text_content().startswith("Deep Dive into Convolutions")
        page.click("nav.md-nav--primary a[href$='04-strides-padding.html']")
        page.wait_for_url("**/04-strides-padding.html")
        assert_math_rendered(page, at_least=4)
        images = page.evaluate("() => [...document.querySelectorAll('article img')].map(i => i.naturalWidth)")
        assert images and all(w > 0 for w in images)
        page.click("input.md-search__input")
        page.keyboard.type("padding")  # the search index loads through the file:// worker shim
        page.locator(".md-search-result__item").first.wait_for(state="visible", timeout=15_000)
        assert page.locator(".md-search-result__item").count() > 0
        watch.assert_clean()
    finally:
        context.close()


PHONE_PAGES = ("chapter/04-strides-padding.html", "chapter/06-first-cnn.html", "exercises/02_strides_padding.html")
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}


def pinch_open(page, target, spread: int = 110):
    """Spread two fingers over an element (Chrome DevTools touch events), as on a phone."""
    box = target.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    cdp = page.context.new_cdp_session(page)

    def fingers(d):
        return [{"x": cx - d, "y": cy, "id": 1}, {"x": cx + d, "y": cy, "id": 2}]

    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": fingers(20)})
    for d in range(30, 20 + spread, 10):
        cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": fingers(d)})
        page.wait_for_timeout(20)
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


def test_at_phone_width_figures_zoom_and_tables_scroll(chromium, served):
    origin, _ = served
    context = chromium.new_context(**PHONE)
    page = context.new_page()
    watch = Watch(page, ("http", "127.0.0.1"))
    try:
        # nothing makes a page wider than the phone: wide tables and formulas scroll in their own boxes
        scrollers = 0
        for name in PHONE_PAGES:
            page.goto(f"{origin}/{name}", wait_until="networkidle")
            assert page.evaluate("() => document.documentElement.scrollWidth") <= 390, name
            boxes = page.locator("article .course-table-scroll")
            for k in range(boxes.count()):
                box = boxes.nth(k)
                if box.evaluate("el => el.scrollWidth > el.clientWidth + 1"):
                    box.evaluate("el => { el.scrollLeft = 60; }")
                    assert box.evaluate("el => el.scrollLeft") > 0, name  # the table moves inside its box
                    scrollers += 1
        assert scrollers >= 1, "no table was wider than the phone: the scrolling box went untested"

        # a dense figure opens full screen and zooms with two fingers until its numbers are readable
        page.goto(f"{origin}/chapter/08-color.html", wait_until="networkidle")
        figure = page.locator("#fig-color_conv img")
        figure.scroll_into_view_if_needed()
        inline = figure.bounding_box()["width"]
        screenshot(page, "phone-colour-figure")
        figure.tap()
        slide = page.locator(".glightbox-container .gslide.current .gslide-image img")
        slide.wait_for(state="visible")
        page.wait_for_timeout(600)  # the opening animation
        opened = slide.bounding_box()["width"]
        assert opened >= inline and slide.evaluate("img => img.naturalWidth > img.clientWidth")
        pinch_open(page, slide)
        page.wait_for_function(
            "() => document.querySelector('.gslide.current .gslide-image img').getBoundingClientRect().width > 1000"
        )
        screenshot(page, "phone-colour-figure-zoomed")
        watch.assert_clean()
    finally:
        context.close()


def test_a_chapter_page_shows_its_code(tab):
    page, watch, origin = tab
    page.goto(f"{origin}/chapter/09-baseline.html", wait_until="networkidle")
    blocks = page.locator("article div.highlight pre code")
    assert blocks.count() >= 3
    code = blocks.nth(2).text_content()
    assert "ActivationStats(with_hist=True)" in code and "learn.fit(1, 0.06)" in code
    assert page.locator("article div.highlight button").count() >= 3  # Material's copy buttons
    blocks.nth(2).scroll_into_view_if_needed()
    screenshot(page, "chapter-page-with-code")
    watch.assert_clean()
