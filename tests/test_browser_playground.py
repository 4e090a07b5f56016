"""The playground page in headless Chromium, served over http and opened from file://.

The build writes ``assets/playground-cases.json``: settings, kernels and ``F.conv2d``'s output for the
"3" and the photo at every kernel size, stride and padding (course/site/playground.py). These tests set
the widget up through its controls, as a reader would, and compare what it computes and shows with
those outputs; then the receptive-field highlight, keyboard use and the look in colour mode.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from browser import Watch, screenshot

from course.site.playground import CASES_URI

pytestmark = [pytest.mark.browser, pytest.mark.slow]

#: The widget computes in float64 like the oracle; only the order of the additions differs.
ATOL = 1e-9


@pytest.fixture(scope="module")
def cases(served):
    _, site = served
    data = json.loads((site / CASES_URI).read_text(encoding="utf-8"))
    assert data["oracle"].startswith("torch.nn.functional.conv2d")
    assert len(data["cases"]) == 16, "the build found no MNIST: the playground has nothing to show"
    return data["cases"]


@pytest.fixture(params=["http", "file"])
def playground(request, chromium, served):
    """The playground page, reached by instant navigation over http, or opened from file://."""
    origin, site = served
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, color_scheme="light")
    page = context.new_page()
    if request.param == "http":
        watch = Watch(page, ("http", "127.0.0.1"))
        page.goto(f"{origin}/index.html", wait_until="networkidle")
        page.click("nav.md-nav--primary a[href$='playground.html']")  # document$ must start it
        page.wait_for_url("**/playground.html")
    else:
        watch = Watch(page, ("file", None))
        page.goto((site / "playground.html").as_uri(), wait_until="load")
    page.wait_for_function("() => document.getElementById('pg-root')?.playground")
    yield page, watch, request.param
    context.close()


def state(page) -> dict:
    """What the widget last computed: settings, the picked activation and the whole output."""
    return page.evaluate("() => document.getElementById('pg-root').playground")


def number(text: str) -> float:
    """A number as the page prints it (a real minus sign)."""
    return float(text.replace("\u2212", "-"))


def set_up(page, case: dict, typed: bool = False):
    """Choose the case's input and settings with the controls, then enter its kernels."""
    page.select_option("#pg-source", case["source"])
    for name in ("ks", "stride", "padding", "scale"):  # the source sets a scale: choose it after
        page.check(f"input[name='pg-{name}'][value='{case[name]}']")
    page.fill("#pg-bias", str(case["bias"]))
    for ch, kernel in enumerate(case["kernels"]):
        boxes = page.locator(f".pg-kernel-block[data-channel='{ch}'] .pg-kernel input")
        assert boxes.count() == case["ks"] ** 2
        if typed:
            for i, w in enumerate(np.ravel(kernel)):
                boxes.nth(i).fill(str(w))
        else:  # the same input events typing sends, without a round trip per box
            boxes.evaluate_all(
                """(els, ws) => els.forEach((el, i) => {
                     el.value = String(ws[i]);
                     el.dispatchEvent(new Event('input', {bubbles: true}));
                   })""",
                np.ravel(kernel).tolist(),
            )


def click_cell(page, selector: str, rows: int, cols: int, r: int, c: int):
    canvas = page.locator(selector)
    box = canvas.bounding_box()
    canvas.click(position={"x": box["width"] * (c + 0.5) / cols, "y": box["height"] * (r + 0.5) / rows})


#: Everything the page shows about the picked activation, read in one round trip.
READ_ARITHMETIC = """() => {
  const arith = document.getElementById('pg-arith');
  const text = (sel) => document.querySelector(sel).textContent;
  return {
    r: +arith.dataset.r, c: +arith.dataset.c, value: +arith.dataset.value,
    head: text('#pg-arith-head'), sum: text('#pg-arith-sum'),
    products: [...arith.querySelectorAll('td[data-product]')].map(td => +td.dataset.product),
    padded: arith.querySelectorAll('td.pg-pad').length,
    rows: text('#pg-formula-rows'), cols: text('#pg-formula-cols'),
  };
}"""


def check_case(page, case: dict, where: str):
    """The whole output against F.conv2d, then one clicked activation as the page spells it out."""
    got = state(page)
    want = np.array(case["expected"])  # (H_out, W_out)
    settings = ("ks", "stride", "padding", "scale")
    assert [got[n] for n in settings] == [case[n] for n in settings], where
    assert np.array(got["output"]).shape == want.shape, where
    np.testing.assert_allclose(np.array(got["output"]), want, rtol=0, atol=ATOL, err_msg=where)

    # a corner when there is padding (its window reads padding), else the strongest activation
    h_out, w_out = want.shape
    r, c = (0, 0) if case["padding"] else np.unravel_index(np.abs(want).argmax(), want.shape)
    click_cell(page, "#pg-fmap", h_out, w_out, int(r), int(c))
    shown = page.evaluate(READ_ARITHMETIC)
    assert shown["rows"].endswith(f"+ 1 = {h_out}") and shown["cols"].endswith(f"+ 1 = {w_out}"), where
    assert (shown["r"], shown["c"]) == (r, c), where
    assert shown["value"] == pytest.approx(want[r, c], abs=ATOL), where
    channels = len(case["kernels"])
    assert len(shown["products"]) == channels * case["ks"] ** 2, where
    assert sum(shown["products"]) + case["bias"] == pytest.approx(want[r, c], abs=ATOL), where
    # padding 1 at (0, 0): the window's top row and left column are padding
    assert shown["padded"] == (channels * (2 * case["ks"] - 1) if case["padding"] else 0), where
    head = re.search(r"Activation \(\d+, \d+\) = (\S+)\.", shown["head"])
    assert number(head.group(1)) == pytest.approx(want[r, c], abs=6e-4), where  # printed to 3 decimals
    assert number(shown["sum"].rstrip(".").split()[-1]) == pytest.approx(want[r, c], abs=6e-4), where


def test_widget_equals_conv2d_on_every_exported_case(playground, cases):
    page, watch, scheme = playground
    # from file:// four cases (both inputs, both kernel sizes) show it works there: the code is the same
    for k, case in enumerate(cases if scheme == "http" else cases[::5]):
        where = f"case {k}: {case['source']} ks={case['ks']} stride={case['stride']} padding={case['padding']}"
        set_up(page, case, typed=k == 0)
        check_case(page, case, where)
    watch.assert_clean()


def highlighted(page, selector: str, n: int) -> list[tuple[int, int]]:
    """Cells of an n×n canvas whose centre is tinted red (the tracer's highlight; the digits are grey)."""
    cells = page.evaluate(
        """([sel, n]) => {
             const canvas = document.querySelector(sel), cell = canvas.width / n;
             const px = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
             const out = [];
             for (let r = 0; r < n; r++) for (let c = 0; c < n; c++) {
               const i = 4 * (Math.floor((r + 0.5) * cell) * canvas.width + Math.floor((c + 0.5) * cell));
               if (px[i] - px[i + 1] > 40) out.push([r, c]);
             }
             return out;
           }""",
        [selector, n],
    )
    return [tuple(x) for x in cells]


def block(r0: int, r1: int, c0: int, c1: int) -> list[tuple[int, int]]:
    return [(r, c) for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)]


def test_receptive_field_highlights_exactly_the_cells_read(playground):
    page, watch, _ = playground
    readout = page.locator("#pg-rf-text")
    # the default: a strong layer-2 activation away from the border, with its full 7×7 field
    assert readout.get_attribute("data-rows") == "7" and readout.get_attribute("data-cols") == "7"
    assert number(re.search(r"= (\S+) reads", readout.text_content()).group(1)) != 0

    # layer 2 (3, 3) reads layer-1 rows/columns 5–7, which read input rows/columns 9–15
    click_cell(page, "#pg-rf-l2", 7, 7, 3, 3)
    assert highlighted(page, "#pg-rf-l2", 7) == [(3, 3)]
    assert highlighted(page, "#pg-rf-l1", 14) == block(5, 7, 5, 7)
    assert highlighted(page, "#pg-rf-input", 28) == block(9, 15, 9, 15)
    assert readout.get_attribute("data-input-box") == "9,15,9,15"
    assert "7×7 pixels" in readout.text_content()

    # the corner: the top-left padding leaves 4×4 real pixels
    click_cell(page, "#pg-rf-l2", 7, 7, 0, 0)
    assert highlighted(page, "#pg-rf-l1", 14) == block(0, 1, 0, 1)
    assert highlighted(page, "#pg-rf-input", 28) == block(0, 3, 0, 3)
    assert "4×4 pixels (the full field is 7×7" in readout.text_content()

    # the bottom-right corner keeps its full field: 28 is even, so padding is never read there
    click_cell(page, "#pg-rf-l2", 7, 7, 6, 6)
    assert len(highlighted(page, "#pg-rf-input", 28)) == 49

    # a first-layer cell reads its 3×3 window
    click_cell(page, "#pg-rf-l1", 14, 14, 6, 6)
    assert highlighted(page, "#pg-rf-l2", 7) == []
    assert highlighted(page, "#pg-rf-l1", 14) == [(6, 6)]
    assert highlighted(page, "#pg-rf-input", 28) == block(11, 13, 11, 13)

    # a 5×5 kernel (padding 2) widens the field to 5 + 4·2 = 13
    page.check("input[name='pg-ks'][value='5']")
    click_cell(page, "#pg-rf-l2", 7, 7, 3, 3)
    assert highlighted(page, "#pg-rf-input", 28) == block(6, 18, 6, 18)
    watch.assert_clean()


def test_the_default_activation_is_not_zero_and_the_hover_readout_follows_changes(playground):
    page, watch, _ = playground
    got = state(page)
    out = np.array(got["output"])
    r, c = got["pick"]["r"], got["pick"]["c"]
    assert out[r, c] != 0 and abs(out[r, c]) == np.abs(out).max()
    assert out[r, c] == 762  # the top-edge kernel on the "3" at 0..255, as on "Features and kernels"

    hover = page.locator("#pg-hover")

    def hovered() -> float:
        return float(hover.get_attribute("data-value"))

    fmap = page.locator("#pg-fmap")
    box = fmap.bounding_box()
    fmap.hover(position={"x": box["width"] * 10.5 / 26, "y": box["height"] * 5.5 / 26})
    assert "(5, 10)" in hover.text_content()
    before = hovered()
    assert before == state(page)["output"][5][10]

    page.locator(".pg-kernel-block select").select_option("left")  # another kernel
    assert hovered() == state(page)["output"][5][10] != before
    page.locator(".pg-kernel input").nth(4).fill("3")  # one edited weight
    assert page.locator(".pg-kernel-block select").input_value() == "custom"
    assert hovered() == state(page)["output"][5][10]
    page.select_option("#pg-source", "digit1")  # another digit
    assert state(page)["source"] == "digit1"
    assert hovered() == state(page)["output"][5][10]
    assert "(5, 10)" in hover.text_content()
    watch.assert_clean()


def test_keyboard_alone_sets_up_and_picks_activations(playground):
    page, watch, _ = playground
    # the kernel's last box, then Tab: the feature map takes the focus
    page.locator(".pg-kernel input").last.focus()
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.id") == "pg-fmap"
    start = state(page)["pick"]
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    pick = state(page)["pick"]
    assert (pick["r"], pick["c"]) == (start["r"] + 2, start["c"] + 1)
    arith = page.locator("#pg-arith")
    assert arith.get_attribute("data-r") == str(pick["r"]) and arith.get_attribute("data-c") == str(pick["c"])
    page.keyboard.press("End")
    assert state(page)["pick"]["c"] == 25
    page.keyboard.press("Home")
    assert state(page)["pick"]["c"] == 0
    for _ in range(30):  # held against the edge, not past it
        page.keyboard.press("ArrowUp")
    assert state(page)["pick"]["r"] == 0
    page.keyboard.press("Tab")  # and Tab moves on
    assert page.evaluate("() => document.activeElement.id") != "pg-fmap"

    # a preset menu: the arrow keys choose the next kernel, and the focus stays on the menu
    menu = page.locator(".pg-kernel-block select")
    menu.focus()
    page.keyboard.press("ArrowDown")
    assert menu.input_value() == "left"
    assert page.evaluate("() => document.activeElement.tagName") == "SELECT"
    assert page.locator(".pg-kernel input").nth(0).input_value() == "-1"  # the left-edge kernel's first row
    assert page.locator(".pg-kernel input").nth(1).input_value() == "1"

    # the settings are native radio groups: arrow keys switch them
    page.locator("input[name='pg-stride']:checked").focus()
    page.keyboard.press("ArrowRight")
    assert state(page)["stride"] == 2
    assert page.locator("#pg-formula-rows").text_content().endswith("+ 1 = 13")

    # the tracer's layers take the focus too
    page.locator("#pg-rf-l1").focus()
    page.keyboard.press("Enter")  # onto layer 1, at its centre
    readout = page.locator("#pg-rf-text")
    assert readout.text_content().startswith("Layer-1 activation (7, 7)")
    page.keyboard.press("ArrowLeft")
    assert readout.text_content().startswith("Layer-1 activation (7, 6)")
    assert readout.get_attribute("data-input-box") == "13,15,11,13"
    watch.assert_clean()


@pytest.mark.parametrize("look", ["light", "dark", "phone"])
def test_colour_mode_with_a_picked_activation_reads_well(chromium, served, look):
    origin, _ = served
    width = 390 if look == "phone" else 1280
    context = chromium.new_context(viewport={"width": width, "height": 900}, color_scheme="light")
    page = context.new_page()
    watch = Watch(page, ("http", "127.0.0.1"))
    page.goto(f"{origin}/playground.html", wait_until="networkidle")
    if look == "dark":
        page.evaluate("() => document.body.setAttribute('data-md-color-scheme', 'slate')")
    page.select_option("#pg-source", "photo")
    got = state(page)
    assert got["scale"] == 1 and len(got["output"]) == 22  # the photo in 0..1, as in the colour figure
    click_cell(page, "#pg-fmap", 22, 30, 8, 13)
    arith = page.locator("#pg-arith")
    assert arith.locator("table.pg-products").count() == 3
    assert [t.split(":")[0] for t in arith.locator("caption").all_text_contents()] == [
        "red channel",
        "green channel",
        "blue channel",
    ]
    assert re.fullmatch(
        r"\S+ \(red\) \+ \S+ \(green\) \+ \S+ \(blue\) \+ 0 \(bias\) = \S+",
        page.locator("#pg-arith-sum").text_content(),
    )
    assert page.locator(".pg-kernel-block").count() == 3 and page.locator("canvas.pg-channel").count() == 3
    if look == "dark":
        caption = "getComputedStyle(document.querySelector('table.pg-red caption')).color"
        assert page.evaluate(caption) == "rgb(255, 138, 128)"  # the light red that reads on slate
    page.locator("#kernel-and-feature-map").scroll_into_view_if_needed()
    screenshot(page, f"playground-colour-{look}")
    if look == "phone":  # wide tables scroll inside their box; the page itself never scrolls sideways
        assert page.evaluate("() => document.documentElement.scrollWidth") <= width
        page.check("input[name='pg-ks'][value='5']")  # three 5×5 tables of products
        assert page.evaluate("() => document.documentElement.scrollWidth") <= width
    watch.assert_clean()
    context.close()
