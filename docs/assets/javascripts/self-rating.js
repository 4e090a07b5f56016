// Self-rating for the quiz's open questions. After revealing a model answer the student marks
// "I had it" or "I didn't"; ratings live in localStorage (nothing leaves the browser) and are added
// to mkdocs-quiz's count of answered closed questions, so progress runs to all forty questions.
// quiz.md loads this script from its content, so Material re-runs it after instant navigation.
(function () {
  const KEY = "course-quiz-self-rating";
  const boxes = Array.from(document.querySelectorAll(".self-rating[data-question]"));
  const summary = document.getElementById("self-rating-summary");
  if (!boxes.length) return;

  function load() {
    try {
      return JSON.parse(localStorage.getItem(KEY)) || {};
    } catch (err) {
      return {};
    }
  }

  function count(selector) {
    const el = document.querySelector("#quiz-results " + selector);
    return el ? Number(el.textContent) || 0 : 0;
  }

  function paint() {
    const ratings = load();
    for (const box of boxes) {
      const value = ratings[box.dataset.question] || "";
      box.dataset.rated = value;
      box.querySelectorAll("button[data-rating]").forEach((b) => {
        b.setAttribute("aria-pressed", String(b.dataset.rating === value));
      });
    }
    if (!summary) return;
    const rated = boxes.filter((b) => ratings[b.dataset.question]).length;
    const had = boxes.filter((b) => ratings[b.dataset.question] === "had").length;
    const set = (cls, n) => (summary.querySelector(cls).textContent = String(n));
    set(".open-rated", rated);
    set(".open-total", boxes.length);
    set(".open-had", had);
    set(".all-done", rated + count(".quiz-results-answered"));
    set(".all-total", boxes.length + count(".quiz-results-total"));
    set(".all-good", had + count(".quiz-results-correct"));
  }

  for (const box of boxes) {
    box.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-rating]");
      if (!button) return;
      const ratings = load();
      ratings[box.dataset.question] = button.dataset.rating;
      localStorage.setItem(KEY, JSON.stringify(ratings));
      paint();
    });
  }

  // mkdocs-quiz fills and updates its own counters; follow them (the summary sits outside them).
  const results = document.getElementById("quiz-results");
  if (results) {
    new MutationObserver(paint).observe(results, { subtree: true, childList: true, characterData: true });
  }
  paint();
})();
