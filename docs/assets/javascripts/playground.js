// The playground page: a kernel editor with a live feature map, and a receptive-field tracer through
// two stride-2 convolutions. Plain JavaScript, no libraries; runs on every page change (instant
// navigation) and does nothing on pages without #pg-root.
(function () {
  "use strict";

  const PRESETS = {
    top: [[-1, -1, -1], [0, 0, 0], [1, 1, 1]],
    left: [[-1, 1, 0], [-1, 1, 0], [-1, 1, 0]],
    diag1: [[0, -1, 1], [-1, 1, 0], [1, 0, 0]],
    diag2: [[1, -1, 0], [0, 1, -1], [0, 0, 1]],
    blur: [[1 / 9, 1 / 9, 1 / 9], [1 / 9, 1 / 9, 1 / 9], [1 / 9, 1 / 9, 1 / 9]],
    identity: [[0, 0, 0], [0, 1, 0], [0, 0, 0]],
  };

  // Cross-correlation of a 2-D array with a 3x3 kernel (what F.conv2d computes).
  function conv(img, k, stride, pad) {
    const h = img.length, w = img[0].length;
    const hOut = Math.floor((h + 2 * pad - 3) / stride) + 1;
    const wOut = Math.floor((w + 2 * pad - 3) / stride) + 1;
    const out = [];
    for (let r = 0; r < hOut; r++) {
      const row = [];
      for (let c = 0; c < wOut; c++) {
        let s = 0;
        for (let i = 0; i < 3; i++) {
          for (let j = 0; j < 3; j++) {
            const y = r * stride - pad + i, x = c * stride - pad + j;
            if (y >= 0 && y < h && x >= 0 && x < w) s += k[i][j] * img[y][x];
          }
        }
        row.push(s);
      }
      out.push(row);
    }
    return out;
  }

  const relu = (a) => a.map((row) => row.map((v) => Math.max(v, 0)));
  const absMax = (a) => Math.max(1e-9, ...a.map((row) => Math.max(...row.map(Math.abs))));

  // Draw a 2-D array: "ink" (0 white .. max black) or "signed" (negative dark, zero grey, positive light).
  function draw(canvas, a, mode) {
    const ctx = canvas.getContext("2d");
    const n = a.length, cell = canvas.width / n, m = absMax(a);
    for (let r = 0; r < n; r++) {
      for (let c = 0; c < a[r].length; c++) {
        const t = mode === "signed" ? 0.5 + a[r][c] / (2 * m) : 1 - a[r][c] / m;
        const g = Math.round(255 * Math.min(1, Math.max(0, t)));
        ctx.fillStyle = `rgb(${g},${g},${g})`;
        ctx.fillRect(c * cell, r * cell, Math.ceil(cell), Math.ceil(cell));
      }
    }
    return cell;
  }

  function box(canvas, n, r0, r1, c0, c1, color) {
    const ctx = canvas.getContext("2d"), cell = canvas.width / n;
    ctx.strokeStyle = color;
    ctx.lineWidth = 3;
    ctx.strokeRect(c0 * cell + 1.5, r0 * cell + 1.5, (c1 - c0 + 1) * cell - 3, (r1 - r0 + 1) * cell - 3);
  }

  const clip = (v, n) => Math.min(n - 1, Math.max(0, v));

  function init() {
    const root = document.getElementById("pg-root");
    const dataEl = document.getElementById("playground-digits");
    if (!root || !dataEl || root.dataset.ready) return;
    root.dataset.ready = "1";
    const digits = JSON.parse(dataEl.dataset.digits);
    const el = (id) => document.getElementById(id);
    const select = el("pg-digit");
    digits.forEach((d, i) => {
      const opt = document.createElement("option");
      opt.value = String(i);
      opt.textContent = `a ${d.label} (training image ${d.index})`;
      select.appendChild(opt);
    });

    // The kernel editor: nine number inputs.
    const inputs = [];
    const grid = el("pg-kernel");
    for (let i = 0; i < 9; i++) {
      const inp = document.createElement("input");
      inp.type = "number";
      inp.step = "0.1";
      inp.setAttribute("aria-label", `kernel row ${Math.floor(i / 3) + 1} column ${(i % 3) + 1}`);
      grid.appendChild(inp);
      inputs.push(inp);
    }
    const kernel = () => [0, 1, 2].map((r) => [0, 1, 2].map((c) => parseFloat(inputs[3 * r + c].value) || 0));
    const setKernel = (k) => inputs.forEach((inp, i) => (inp.value = String(+k[Math.floor(i / 3)][i % 3].toFixed(3))));

    let state = null;
    let picked = { layer: 2, r: 3, c: 3 };

    function compute() {
      const img = digits[+select.value].pixels.map((row) => row.map((v) => v / 255));
      const k = kernel();
      const fmap = conv(img, k, 1, 0);
      const l1 = relu(conv(img, k, 2, 1));
      const l2 = relu(conv(l1, k, 2, 1));
      state = { img, fmap, l1, l2 };
      draw(el("pg-input"), img, "ink");
      draw(el("pg-fmap"), fmap, "signed");
      let lo = Infinity, hi = -Infinity;
      fmap.forEach((row) => row.forEach((v) => { lo = Math.min(lo, v); hi = Math.max(hi, v); }));
      el("pg-range").textContent = `values from ${lo.toFixed(2)} to ${hi.toFixed(2)}`;
      trace();
    }

    function trace() {
      const { img, l1, l2 } = state;
      draw(el("pg-rf-input"), img, "ink");
      draw(el("pg-rf-l1"), l1, "ink");
      draw(el("pg-rf-l2"), l2, "ink");
      const { layer, r, c } = picked;
      let a, b, text;
      if (layer === 2) {
        box(el("pg-rf-l2"), 7, r, r, c, c, "#e53935");
        a = [clip(2 * r - 1, 14), clip(2 * r + 1, 14), clip(2 * c - 1, 14), clip(2 * c + 1, 14)];
        box(el("pg-rf-l1"), 14, a[0], a[1], a[2], a[3], "#e53935");
        b = [clip(4 * r - 3, 28), clip(4 * r + 3, 28), clip(4 * c - 3, 28), clip(4 * c + 3, 28)];
        text = `Layer-2 activation (${r}, ${c}) = ${l2[r][c].toFixed(3)} reads layer-1 rows ${a[0]}–${a[1]}, ` +
          `columns ${a[2]}–${a[3]}, which read input rows ${b[0]}–${b[1]}, columns ${b[2]}–${b[3]}: ` +
          `${b[1] - b[0] + 1}×${b[3] - b[2] + 1} pixels (7×7 away from the border).`;
      } else {
        box(el("pg-rf-l1"), 14, r, r, c, c, "#e53935");
        b = [clip(2 * r - 1, 28), clip(2 * r + 1, 28), clip(2 * c - 1, 28), clip(2 * c + 1, 28)];
        text = `Layer-1 activation (${r}, ${c}) = ${l1[r][c].toFixed(3)} reads input rows ${b[0]}–${b[1]}, ` +
          `columns ${b[2]}–${b[3]}: ${b[1] - b[0] + 1}×${b[3] - b[2] + 1} pixels.`;
      }
      box(el("pg-rf-input"), 28, b[0], b[1], b[2], b[3], "#e53935");
      const out = el("pg-rf-text");
      out.textContent = text;
      out.dataset.rows = String(b[1] - b[0] + 1);
      out.dataset.cols = String(b[3] - b[2] + 1);
    }

    function cellAt(canvas, n, event) {
      const rect = canvas.getBoundingClientRect();
      const c = Math.floor(((event.clientX - rect.left) / rect.width) * n);
      const r = Math.floor(((event.clientY - rect.top) / rect.height) * n);
      return { r: clip(r, n), c: clip(c, n) };
    }

    el("pg-rf-l2").addEventListener("click", (e) => { picked = { layer: 2, ...cellAt(e.currentTarget, 7, e) }; trace(); });
    el("pg-rf-l1").addEventListener("click", (e) => { picked = { layer: 1, ...cellAt(e.currentTarget, 14, e) }; trace(); });
    el("pg-fmap").addEventListener("mousemove", (e) => {
      const { r, c } = cellAt(e.currentTarget, 26, e);
      el("pg-cell").textContent = `feature map (${r}, ${c}) = ${state.fmap[r][c].toFixed(3)}: the kernel centred on input pixel (${r + 1}, ${c + 1}).`;
    });
    inputs.forEach((inp) => inp.addEventListener("input", compute));
    select.addEventListener("change", compute);
    root.querySelectorAll("[data-kernel]").forEach((btn) =>
      btn.addEventListener("click", () => { setKernel(PRESETS[btn.dataset.kernel]); compute(); }));

    setKernel(PRESETS.top);
    compute();
  }

  if (typeof document$ !== "undefined") {
    document$.subscribe(init);
  } else {
    document.addEventListener("DOMContentLoaded", init);
  }
})();
