// The playground page (docs/playground.md): one convolution to set up and inspect, on a digit or on
// the colour photo, and a receptive-field tracer through two stride-2 layers. Plain ES2017, no
// libraries, no requests: the data is inline in the page (#playground-data), so it works from file://.
// The numbers follow F.conv2d (cross-correlation, zero padding, one output channel), which
// tests/test_browser_playground.py checks against cases the build computed with torch.
(function () {
  "use strict";

  // ------------------------------------------------------------------------------------ arithmetic

  /** Output side for an input side n: floor((n + 2 * padding - ks) / stride) + 1. */
  const outSize = (n, ks, stride, padding) => Math.floor((n + 2 * padding - ks) / stride) + 1;

  /** The products behind activation (r, c): per channel, ks*ks terms read row by row; padding reads 0. */
  function terms(channels, kernels, r, c, stride, padding) {
    return channels.map((img, ch) => {
      const k = kernels[ch];
      const list = [];
      for (let i = 0; i < k.length; i++) {
        for (let j = 0; j < k.length; j++) {
          const y = r * stride - padding + i, x = c * stride - padding + j;
          const inside = y >= 0 && y < img.length && x >= 0 && x < img[0].length;
          const pixel = inside ? img[y][x] : 0;
          list.push({ y, x, inside, weight: k[i][j], pixel, product: k[i][j] * pixel });
        }
      }
      return list;
    });
  }

  const sum = (list) => list.reduce((s, t) => s + t.product, 0);

  /** One output channel of F.conv2d: channels (C_in, H, W), kernels (C_in, ks, ks), a scalar bias. */
  function conv2d(channels, kernels, bias, stride, padding) {
    const ks = kernels[0].length;
    const hOut = outSize(channels[0].length, ks, stride, padding);
    const wOut = outSize(channels[0][0].length, ks, stride, padding);
    const out = [];
    for (let r = 0; r < hOut; r++) {
      const row = [];
      for (let c = 0; c < wOut; c++) {
        let total = bias; // the same sum as terms() spells out, without building its list
        channels.forEach((img, ch) => {
          for (let i = 0; i < ks; i++) {
            const y = r * stride - padding + i;
            if (y < 0 || y >= img.length) continue;
            for (let j = 0; j < ks; j++) {
              const x = c * stride - padding + j;
              if (x >= 0 && x < img[0].length) total += kernels[ch][i][j] * img[y][x];
            }
          }
        });
        row.push(total);
      }
      out.push(row);
    }
    return out;
  }

  const relu = (a) => a.map((row) => row.map((v) => Math.max(v, 0)));
  const absMax = (a) => Math.max(1e-12, ...a.map((row) => Math.max(...row.map(Math.abs))));
  const clip = (v, n) => Math.min(n - 1, Math.max(0, v));
  /** A copy of a 2-D array with its outer ring set to zero. */
  const interior = (a) =>
    a.map((row, r) => row.map((v, c) => (r && c && r < a.length - 1 && c < row.length - 1 ? v : 0)));

  /** A number for reading: at most three decimals, no trailing zeros, a real minus sign. */
  function fmt(v) {
    const s = (Math.abs(v) < 5e-4 ? 0 : v).toFixed(3).replace(/\.?0+$/, "");
    return s.replace("-", "\u2212");
  }

  /** A typed weight: a number or a fraction such as 1/9; NaN when it is neither. */
  function parseWeight(text) {
    const t = text.trim().replace("\u2212", "-");
    const m = t.match(/^(-?[\d.]+)\s*\/\s*([\d.]+)$/);
    if (m) return parseFloat(m[1]) / parseFloat(m[2]);
    return /^-?(\d+\.?\d*|\.\d+)(e-?\d+)?$/i.test(t) ? parseFloat(t) : NaN;
  }

  // ---------------------------------------------------------------------------------------- kernels

  // Each preset is written for any odd size; at 3×3 it is exactly the chapter's kernel. m is the centre.
  const PRESETS = {
    top: ["top edge", (i, j, m) => Math.sign(i - m)],
    left: ["left edge", (i, j, m) => (j === m - 1 ? -1 : j === m ? 1 : 0)],
    diag1: ["diagonal 1", (i, j, m) => (i + j === 2 * m ? 1 : i + j === 2 * m - 1 ? -1 : 0)],
    diag2: ["diagonal 2", (i, j) => (i === j ? 1 : j - i === 1 ? -1 : 0)],
    blur: ["mean (blur)", (i, j, m) => `1/${(2 * m + 1) ** 2}`],
    identity: ["identity", (i, j, m) => (i === m && j === m ? 1 : 0)],
    zero: ["zeros", () => 0],
  };
  const CHANNELS = ["red", "green", "blue"];
  // One kernel per channel in colour mode, as in the chapter's colour-convolution figure.
  const COLOUR_PRESETS = ["top", "left", "blur"];

  function presetText(name, ks) {
    const m = (ks - 1) / 2, weight = PRESETS[name][1];
    return [...Array(ks)].map((_, i) => [...Array(ks)].map((_, j) => String(weight(i, j, m))));
  }

  /** A kernel's text grid at another size: centred, padded with zeros or cropped. */
  function resizeText(grid, ks) {
    const shift = (grid.length - ks) / 2;
    return [...Array(ks)].map((_, i) => [...Array(ks)].map((_, j) => (grid[i + shift] || [])[j + shift] || "0"));
  }

  // ---------------------------------------------------------------------------------------- drawing

  const HIGHLIGHT = "#e53935";
  const PADDING_COLOUR = [176, 190, 197]; // blue-grey

  /** Fill a canvas with rows×cols cells of `cell` pixels; colourAt(y, x) gives a cell's [r, g, b].
   *  One pixel per cell first, then scaled up without smoothing: much faster than a rectangle per cell. */
  function paint(canvas, rows, cols, cell, colourAt) {
    const pixels = new ImageData(cols, rows);
    for (let y = 0; y < rows; y++) {
      for (let x = 0; x < cols; x++) {
        pixels.data.set([...colourAt(y, x), 255], 4 * (y * cols + x));
      }
    }
    const small = document.createElement("canvas");
    small.width = cols;
    small.height = rows;
    small.getContext("2d").putImageData(pixels, 0, 0);
    canvas.width = cols * cell;
    canvas.height = rows * cell;
    const ctx = canvas.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(small, 0, 0, canvas.width, canvas.height);
    return ctx;
  }

  const grey = (t) => Array(3).fill(Math.round(255 * Math.min(1, Math.max(0, t))));

  /** Negative dark, zero mid-grey, positive light (as the chapter's feature-map figures). */
  function paintSigned(canvas, a, cell) {
    const m = absMax(a);
    return paint(canvas, a.length, a[0].length, cell, (y, x) => grey(0.5 + a[y][x] / (2 * m)));
  }

  /** An outline around cells r0..r1 × c0..c1, and a translucent fill when `fill` is set. */
  function mark(ctx, cell, r0, r1, c0, c1, fill = false, colour = HIGHLIGHT) {
    const x = c0 * cell, y = r0 * cell, w = (c1 - c0 + 1) * cell, h = (r1 - r0 + 1) * cell;
    if (fill) {
      ctx.fillStyle = "rgba(229, 57, 53, 0.45)";
      ctx.fillRect(x, y, w, h);
    }
    ctx.strokeStyle = colour;
    ctx.lineWidth = 2;
    ctx.strokeRect(x + 1, y + 1, w - 2, h - 2);
  }

  /** The cell of an n-rows × m-columns canvas under a mouse event. */
  function cellAt(canvas, rows, cols, event) {
    const rect = canvas.getBoundingClientRect();
    return {
      r: clip(Math.floor(((event.clientY - rect.top) / rect.height) * rows), rows),
      c: clip(Math.floor(((event.clientX - rect.left) / rect.width) * cols), cols),
    };
  }

  // Keys a focused map answers: arrows move the picked cell, Home/End go to the row's ends, Enter
  // picks the cell again (the readout is re-announced). Every other key, Tab above all, passes.
  const STEPS = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
  const MAP_KEYS = new Set([...Object.keys(STEPS), "Home", "End", "Enter"]);

  function moveByKey(pick, key, rows, cols) {
    if (STEPS[key]) {
      pick.r = clip(pick.r + STEPS[key][0], rows);
      pick.c = clip(pick.c + STEPS[key][1], cols);
    } else if (key === "Home" || key === "End") {
      pick.c = key === "Home" ? 0 : cols - 1;
    }
  }

  const make = (tag, attrs = {}, text = "") => {
    const node = document.createElement(tag);
    Object.entries(attrs).forEach(([k, v]) => node.setAttribute(k, v));
    if (text) node.textContent = text;
    return node;
  };

  // ------------------------------------------------------------------------------------- the widget

  function init() {
    const root = document.getElementById("pg-root");
    const dataEl = document.getElementById("playground-data");
    if (!root || !dataEl || root.dataset.ready) return;
    root.dataset.ready = "1";
    const data = JSON.parse(dataEl.dataset.playground);
    const el = (id) => document.getElementById(id);
    const checked = (name) => +root.querySelector(`input[name="${name}"]:checked`).value;

    const state = {
      source: "digit0",
      digit: 0, // the digit the receptive-field tracer uses (the last one chosen)
      kernels: { grey: [presetText("top", 3)], colour: COLOUR_PRESETS.map((p) => presetText(p, 3)) },
      presets: { grey: ["top"], colour: COLOUR_PRESETS.slice() },
      pick: null, // the activation whose arithmetic is shown; null: choose the strongest
      hover: null,
      rfPick: null, // the traced cell; null: the strongest layer-2 activation away from the border
    };
    const mode = () => (state.source === "photo" ? "colour" : "grey");
    const settings = () => ({
      ks: checked("pg-ks"),
      stride: checked("pg-stride"),
      padding: checked("pg-padding"),
      scale: checked("pg-scale"),
      bias: parseWeight(el("pg-bias").value) || 0,
    });

    const select = el("pg-source");
    data.digits.forEach((d, i) => {
      const name = i === 0 ? `the chapter's ${d.label}` : `a ${d.label}`;
      select.appendChild(make("option", { value: `digit${i}` }, `${name} (MNIST training image ${d.index})`));
    });
    select.appendChild(make("option", { value: "photo" }, "colour photo: red, green and blue channels"));

    /** The input as channels (C_in, H, W) at the chosen pixel scale. */
    function inputChannels(source, scale) {
      const raw = source === "photo" ? data.photo.channels : [data.digits[+source.slice(5)].pixels];
      return raw.map((img) => img.map((row) => row.map((v) => (scale === 255 ? v : v / 255))));
    }

    // The kernel editor: one grid of text boxes per input channel, each with its preset menu.
    function buildKernels() {
      const box = el("pg-kernels");
      box.textContent = "";
      const m = mode(), ks = settings().ks;
      state.kernels[m].forEach((grid, ch) => {
        const block = make("div", { class: "pg-kernel-block", "data-channel": String(ch) });
        const who = m === "colour" ? `${CHANNELS[ch]} kernel` : "kernel";
        const head = make("div", { class: "pg-kernel-head" });
        if (m === "colour") {
          const attrs = { class: "pg-channel", "data-channel": String(ch), "aria-hidden": "true" };
          head.appendChild(make("canvas", attrs));
        }
        const label = make("label", {}, `${who} `);
        const menu = make("select", { "aria-label": `preset for the ${who}` });
        Object.entries(PRESETS).forEach(([key, [text]]) => menu.appendChild(make("option", { value: key }, text)));
        menu.appendChild(make("option", { value: "custom" }, "your own"));
        menu.value = state.presets[m][ch];
        label.appendChild(menu);
        head.appendChild(label);
        block.appendChild(head);
        const gridEl = make("div", { class: "pg-kernel", style: `grid-template-columns: repeat(${ks}, 3.2rem)` });
        grid.forEach((row, i) =>
          row.forEach((text, j) => {
            const inp = make("input", {
              type: "text",
              inputmode: "decimal",
              "aria-label": `${who}, row ${i + 1}, column ${j + 1}`,
            });
            inp.value = text;
            inp.addEventListener("input", () => {
              grid[i][j] = inp.value;
              state.presets[m][ch] = menu.value = "custom";
              render();
            });
            gridEl.appendChild(inp);
          })
        );
        menu.addEventListener("change", () => {
          if (menu.value === "custom") return;
          state.presets[m][ch] = menu.value;
          // fill the boxes in place, so that the menu keeps the keyboard focus
          presetText(menu.value, ks).forEach((row, i) => row.forEach((t, j) => (grid[i][j] = t)));
          gridEl.querySelectorAll("input").forEach((inp, k) => (inp.value = grid[Math.floor(k / ks)][k % ks]));
          render();
        });
        block.appendChild(gridEl);
        box.appendChild(block);
      });
    }

    /** Kernels as numbers; a box that is not a number counts as 0 and is marked invalid. */
    function readKernels(m) {
      return state.kernels[m].map((grid) => grid.map((row) => row.map((t) => parseWeight(t) || 0)));
    }

    function markInvalid() {
      root.querySelectorAll(".pg-kernel input, #pg-bias").forEach((inp) => {
        const bad = Number.isNaN(parseWeight(inp.value));
        inp.classList.toggle("pg-invalid", bad);
        inp.setAttribute("aria-invalid", String(bad));
      });
    }

    function strongest(out) {
      let best = { r: 0, c: 0 };
      out.forEach((row, r) =>
        row.forEach((v, c) => {
          if (Math.abs(v) > Math.abs(out[best.r][best.c])) best = { r, c };
        })
      );
      return best;
    }

    // -------------------------------------------------------------- the feature map and its arithmetic

    let view = null; // what the last render computed, for the event handlers

    function render() {
      const s = settings(), m = mode();
      const channels = inputChannels(state.source, s.scale);
      const kernels = readKernels(m);
      const out = conv2d(channels, kernels, s.bias, s.stride, s.padding);
      const inRange = (p) => p && p.r < out.length && p.c < out[0].length;
      if (!inRange(state.pick)) state.pick = strongest(out);
      if (!inRange(state.hover)) state.hover = null;
      view = { channels, kernels, out, ...s };
      // the same for the tests and the curious: document.getElementById("pg-root").playground
      root.playground = { source: state.source, output: out, pick: { ...state.pick }, ...s };
      markInvalid();
      drawMain();
      showFormula();
      showHover();
      showArithmetic();
      // the tracer depends on the digit, the grey kernel, ks and the scale only
      const traceKey = JSON.stringify([state.digit, state.kernels.grey, s.ks, s.scale]);
      if (traceKey !== traced) trace();
    }

    function drawMain() {
      const { channels, out, ks, stride, padding, scale } = view;
      const { r, c } = state.pick;
      const h = channels[0].length, w = channels[0][0].length;
      // the raw 0..255 value at (y, x) of the padded input, or null on the padding
      const at = (img, y, x) => {
        const inside = y >= padding && x >= padding && y < h + padding && x < w + padding;
        return inside ? img[y - padding][x - padding] * (255 / scale) : null;
      };
      const win = [r * stride, r * stride + ks - 1, c * stride, c * stride + ks - 1]; // in padded coordinates
      const colour = channels.length === 3;
      const ctx = paint(el("pg-input"), h + 2 * padding, w + 2 * padding, 8, (y, x) => {
        if (at(channels[0], y, x) === null) return PADDING_COLOUR;
        if (!colour) return grey(1 - at(channels[0], y, x) / 255);
        const [R, G, B] = channels.map((img) => Math.round(at(img, y, x)));
        return [R, G, B];
      });
      mark(ctx, 8, ...win);
      root.querySelectorAll("canvas.pg-channel").forEach((canvas) => {
        const ch = +canvas.dataset.channel;
        const tint = (v) => CHANNELS.map((_, k) => (k === ch ? Math.round(v) : 0));
        const cctx = paint(canvas, h + 2 * padding, w + 2 * padding, 3, (y, x) => {
          const v = at(channels[ch], y, x);
          return v === null ? PADDING_COLOUR : tint(v);
        });
        mark(cctx, 3, ...win, false, "#fff"); // red would vanish on the red channel
      });
      mark(paintSigned(el("pg-fmap"), out, 8), 8, r, r, c, c);
      const lo = Math.min(...out.map((row) => Math.min(...row)));
      const hi = Math.max(...out.map((row) => Math.max(...row)));
      el("pg-range").textContent = `values from ${fmt(lo)} to ${fmt(hi)}`;
      el("pg-fmap-size").textContent = `${out.length}×${out[0].length}`;
      const what = colour ? "photo crop" : "digit";
      el("pg-input-caption").textContent =
        `${what}, ${h}×${w}` + (padding ? `, padded to ${h + 2 * padding}×${w + 2 * padding}` : "") +
        `; pixels 0–${scale}`;
    }

    function showFormula() {
      const { channels, ks, stride, padding, out } = view;
      const line = (id, what, name, n, got) => {
        const q = (n + 2 * padding - ks) / stride;
        const target = el(id);
        target.textContent = `${what}: `;
        target.append(make("var", {}, name), make("sub", {}, "out"));
        target.append(` = ⌊(${n} + 2×${padding} − ${ks}) / ${stride}⌋ + 1 = ⌊${fmt(q)}⌋ + 1 = ${got}`);
      };
      line("pg-formula-rows", "rows", "H", channels[0].length, out.length);
      line("pg-formula-cols", "columns", "W", channels[0][0].length, out[0].length);
    }

    function showHover() {
      const out = el("pg-hover");
      if (!state.hover) {
        out.textContent = "Point at the feature map to read a value; click or use the arrow keys to pick one.";
        return;
      }
      const { r, c } = state.hover;
      out.textContent = `Under the pointer: activation (${r}, ${c}) = ${fmt(view.out[r][c])}.`;
      out.dataset.value = String(view.out[r][c]);
    }

    function showArithmetic() {
      const { channels, kernels, out, stride, padding, bias } = view;
      const { r, c } = state.pick;
      const parts = terms(channels, kernels, r, c, stride, padding);
      const box = el("pg-arith");
      box.dataset.value = String(out[r][c]);
      box.dataset.r = String(r);
      box.dataset.c = String(c);
      const first = parts[0][0], last = parts[0][parts[0].length - 1];
      const padded = parts[0].filter((t) => !t.inside).length;
      const head = el("pg-arith-head"); // a live region: screen readers hear this line, not the tables
      head.textContent = `Activation (${r}, ${c}) = `;
      head.append(make("strong", {}, fmt(out[r][c])));
      // rows and columns of the input; −1 (or H, W) is the ring of padding
      head.append(
        `. Its window covers input rows ${fmt(first.y)} to ${fmt(last.y)} and columns ${fmt(first.x)} to ` +
          `${fmt(last.x)}` +
          (padded ? `; ${padded} of its cells fall on the padding and read 0.` : ".")
      );
      const tables = el("pg-arith-tables");
      tables.textContent = "";
      parts.forEach((list, ch) => {
        const name = channels.length === 3 ? CHANNELS[ch] : "";
        const table = make("table", { class: `pg-products${name ? " pg-" + name : ""}` });
        table.appendChild(make("caption", {}, `${name ? name + " channel: " : ""}weight × pixel`));
        const ks = kernels[ch].length;
        for (let i = 0; i < ks; i++) {
          const tr = make("tr");
          list.slice(i * ks, i * ks + ks).forEach((t) => {
            const td = make("td", { "data-product": String(t.product) }, `${fmt(t.weight)} × ${fmt(t.pixel)}`);
            if (!t.inside) td.classList.add("pg-pad");
            td.appendChild(make("br"));
            td.append(`= ${fmt(t.product)}`);
            tr.appendChild(td);
          });
          table.appendChild(tr);
        }
        const foot = make("tr", { class: "pg-subtotal" });
        foot.appendChild(make("td", { colspan: String(ks) }, `sum: ${fmt(sum(list))}`));
        table.appendChild(foot);
        tables.appendChild(table);
      });
      // grey: "the 9 products add up to 762."; colour: "s (red) + s (green) + s (blue) + b (bias) = total"
      const total = el("pg-arith-sum");
      if (channels.length === 3) {
        const sums = parts.map((list, ch) => `${fmt(sum(list))} (${CHANNELS[ch]})`);
        total.textContent = `${sums.join(" + ")} + ${fmt(bias)} (bias) = ${fmt(out[r][c])}`;
      } else {
        const products = `the ${parts[0].length} products add up to ${fmt(sum(parts[0]))}`;
        total.textContent = bias ? `${products}, plus ${fmt(bias)} (bias): ${fmt(out[r][c])}.` : `${products}.`;
      }
    }

    // ------------------------------------------------------------------------------ receptive field

    let rf = null; // the tracer's layers
    let traced = ""; // what they were computed from

    function trace() {
      const { ks, scale } = view;
      const stride = 2, padding = (ks - 1) / 2;
      const img = inputChannels(`digit${state.digit}`, scale)[0];
      const k = readKernels("grey")[0];
      const l1 = relu(conv2d([img], [k], 0, stride, padding));
      const l2 = relu(conv2d([l1], [k], 0, stride, padding));
      rf = { l1, l2 };
      traced = JSON.stringify([state.digit, state.kernels.grey, ks, scale]);
      const sizes = [img.length, l1.length, l2.length];
      const cells = sizes.map((n) => Math.floor(168 / n));
      const ink = (a, m) => (y, x) => grey(1 - a[y][x] / m);
      const ctxIn = paint(el("pg-rf-input"), sizes[0], sizes[0], cells[0], ink(img, absMax(img)));
      const ctx1 = paint(el("pg-rf-l1"), sizes[1], sizes[1], cells[1], ink(l1, absMax(l1)));
      const ctx2 = paint(el("pg-rf-l2"), sizes[2], sizes[2], cells[2], ink(l2, absMax(l2)));
      el("pg-rf-l1-size").textContent = `${sizes[1]}×${sizes[1]}`;
      el("pg-rf-l2-size").textContent = `${sizes[2]}×${sizes[2]}`;
      if (!state.rfPick) state.rfPick = { layer: 2, ...strongest(interior(l2)) };
      const pick = state.rfPick;
      pick.r = clip(pick.r, sizes[pick.layer]);
      pick.c = clip(pick.c, sizes[pick.layer]);
      // rows (or columns) a0..a1 of one layer read rows a0*s-p .. a1*s-p+ks-1 of the layer below
      const back = ([a0, a1], n) => [clip(a0 * stride - padding, n), clip(a1 * stride - padding + ks - 1, n)];
      let rows = [pick.r, pick.r], cols = [pick.c, pick.c], text;
      const value = (pick.layer === 2 ? l2 : l1)[pick.r][pick.c];
      if (pick.layer === 2) {
        mark(ctx2, cells[2], pick.r, pick.r, pick.c, pick.c, true);
        rows = back(rows, sizes[1]);
        cols = back(cols, sizes[1]);
        mark(ctx1, cells[1], rows[0], rows[1], cols[0], cols[1], true);
        el("pg-rf-text").dataset.l1Box = [...rows, ...cols].join(",");
        text =
          `Layer-2 activation (${pick.r}, ${pick.c}) = ${fmt(value)} reads layer-1 rows ${rows[0]}–${rows[1]}, ` +
          `columns ${cols[0]}–${cols[1]}, which read`;
      } else {
        mark(ctx1, cells[1], pick.r, pick.r, pick.c, pick.c, true);
        delete el("pg-rf-text").dataset.l1Box;
        text = `Layer-1 activation (${pick.r}, ${pick.c}) = ${fmt(value)} reads`;
      }
      rows = back(rows, sizes[0]);
      cols = back(cols, sizes[0]);
      mark(ctxIn, cells[0], rows[0], rows[1], cols[0], cols[1], true);
      const full = pick.layer === 2 ? ks + (ks - 1) * stride : ks;
      const h = rows[1] - rows[0] + 1, w = cols[1] - cols[0] + 1;
      const out = el("pg-rf-text");
      out.textContent =
        `${text} input rows ${rows[0]}–${rows[1]}, columns ${cols[0]}–${cols[1]}: ${h}×${w} pixels` +
        (h * w < full * full ? ` (the full field is ${full}×${full}; the rest falls on padding).` : ".");
      out.dataset.inputBox = [...rows, ...cols].join(",");
      out.dataset.rows = String(h);
      out.dataset.cols = String(w);
    }

    // -------------------------------------------------------------------------------------- events

    const fmap = el("pg-fmap");
    fmap.addEventListener("mousemove", (e) => {
      state.hover = cellAt(fmap, view.out.length, view.out[0].length, e);
      showHover();
    });
    fmap.addEventListener("click", (e) => {
      state.pick = cellAt(fmap, view.out.length, view.out[0].length, e);
      render();
    });
    fmap.addEventListener("keydown", (e) => {
      if (!MAP_KEYS.has(e.key)) return;
      e.preventDefault();
      moveByKey(state.pick, e.key, view.out.length, view.out[0].length);
      render();
    });
    [1, 2].forEach((layer) => {
      const canvas = el(`pg-rf-l${layer}`);
      const size = () => (layer === 2 ? rf.l2 : rf.l1).length;
      canvas.addEventListener("click", (e) => {
        state.rfPick = { layer, ...cellAt(canvas, size(), size(), e) };
        trace();
      });
      canvas.addEventListener("keydown", (e) => {
        if (!MAP_KEYS.has(e.key)) return;
        e.preventDefault();
        const centre = Math.floor(size() / 2);
        if (state.rfPick.layer !== layer) state.rfPick = { layer, r: centre, c: centre };
        else moveByKey(state.rfPick, e.key, size(), size());
        trace();
      });
    });
    select.addEventListener("change", () => {
      const was = mode();
      state.source = select.value;
      if (state.source !== "photo") {
        state.digit = +state.source.slice(5);
        state.rfPick = null;
      }
      // each input at the chapter's scale: raw digits as on "Features and kernels", the photo in 0..1
      root.querySelector(`input[name="pg-scale"][value="${state.source === "photo" ? 1 : 255}"]`).checked = true;
      state.pick = null;
      if (mode() !== was) buildKernels();
      render();
    });
    root.querySelectorAll('input[name="pg-ks"]').forEach((radio) =>
      radio.addEventListener("change", () => {
        const ks = settings().ks;
        ["grey", "colour"].forEach((m) => {
          state.kernels[m] = state.kernels[m].map((grid, ch) => {
            const name = state.presets[m][ch];
            return name === "custom" ? resizeText(grid, ks) : presetText(name, ks);
          });
        });
        state.pick = null;
        buildKernels();
        render();
      })
    );
    root.querySelectorAll('input[name="pg-stride"], input[name="pg-padding"]').forEach((radio) =>
      radio.addEventListener("change", () => {
        state.pick = null;
        render();
      })
    );
    root.querySelectorAll('input[name="pg-scale"]').forEach((radio) => radio.addEventListener("change", render));
    el("pg-bias").addEventListener("input", render);

    buildKernels();
    render();
  }

  // Material's document$ emits on every page change (instant navigation); on file:// it completes
  // without emitting, so start from the page load too. init() runs once per page.
  if (typeof document$ !== "undefined") document$.subscribe(init);
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
