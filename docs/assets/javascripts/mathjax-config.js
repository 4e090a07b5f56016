// MathJax 3 (vendored, tex-chtml) for pymdownx.arithmatex in generic mode.
// Only elements with class "arithmatex" are typeset. On Material's instant navigation the new
// page is typeset again; the first emission of document$ is the initial load, which MathJax's
// own startup already typesets, so it is skipped (typesetting twice duplicates formulas).
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"]],
    displayMath: [["\\[", "\\]"]],
    processEscapes: true,
    processEnvironments: true,
  },
  options: {
    ignoreHtmlClass: ".+",
    processHtmlClass: "arithmatex",
  },
};

(function () {
  let first = true;
  document$.subscribe(function () {
    if (first) {
      first = false;
      return;
    }
    MathJax.startup.promise = MathJax.startup.promise.then(function () {
      MathJax.startup.output.clearCache();
      MathJax.typesetClear();
      MathJax.texReset();
      return MathJax.typesetPromise();
    });
  });
})();
