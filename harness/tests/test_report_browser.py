"""report.html in a real browser: headline and every figure render, no console error, no request."""
from __future__ import annotations

import pytest

from harness.tests.browser import (browser_missing, console_errors, network_requests, screenshot,
                                   start_browser)

_MISSING = browser_missing()


@pytest.mark.skipif(bool(_MISSING), reason=f"no headless browser here: {_MISSING}")
def test_report_html_renders_offline_in_chromium(written):
    run_dir = written[0]
    page = run_dir / "report.html"
    driver = start_browser()
    try:
        driver.get(page.resolve().as_uri())
        rows = driver.execute_script(
            "return document.querySelectorAll('#headline-0 tbody tr').length")
        assert rows > 0, "the headline table has no rows"
        sizes = driver.execute_script(
            "return Array.from(document.querySelectorAll('figure')).map(f => {"
            " const s = f.querySelector('svg'); const r = s ? s.getBoundingClientRect() : {width: 0, height: 0};"
            " return [f.id, r.width, r.height]; })")
        drawn = {name for name, *_ in sizes}
        assert "story1_headline_speedup" in drawn and len(drawn) >= 6
        assert all(w > 100 and h > 100 for _, w, h in sizes), sizes
        # Sorting: clicking the N column orders the rows by N.
        driver.execute_script("document.querySelectorAll('#headline-0 th')[1].click()")
        ns = driver.execute_script(
            "return Array.from(document.querySelectorAll('#headline-0 tbody tr')).map(r => +r.cells[1].textContent)")
        assert ns == sorted(ns)
        # Show/hide: unticking a series hides its SVG groups in that figure only.
        hidden = driver.execute_script(
            "const f = document.getElementById('story1_headline_speedup');"
            "const box = f.querySelector('.toggles input'); box.click();"
            "return Array.from(f.querySelectorAll('svg [id]')).filter(e => e.id === 'series:' + box.dataset.series)"
            ".every(e => e.style.display === 'none');")
        assert hidden
        assert console_errors(driver) == []
        assert network_requests(driver) == []
        assert driver.execute_script("return performance.getEntriesByType('resource').length") == 0
        shot = screenshot(driver, run_dir / "report_screenshot.png")
        assert shot.stat().st_size > 10_000
    finally:
        driver.quit()


#: Every figure, image, table and code block must fit its container at both widths (a table may
#: scroll inside its own box, which then must fit).
_OVERFLOW_JS = """
const out = [];
document.querySelectorAll('figure svg, img, table, pre').forEach(el => {
  const parent = el.parentElement.closest('figure, section, body') || document.body;
  const r = el.getBoundingClientRect(), p = parent.getBoundingClientRect();
  const name = el.id || (el.closest('figure') || {}).id || el.tagName + ':' + (el.getAttribute('src') || '');
  if (r.right > p.right + 1 || r.left < p.left - 1 || r.right > window.innerWidth + 1) out.push([name, r.right, p.right]);
});
if (document.documentElement.scrollWidth > window.innerWidth + 1) out.push(['page', document.documentElement.scrollWidth, window.innerWidth]);
return out;
"""


def page_overflow(driver) -> list:
    return driver.execute_script(_OVERFLOW_JS)


@pytest.mark.skipif(bool(_MISSING), reason=f"no headless browser here: {_MISSING}")
@pytest.mark.parametrize("width", [1400, 800])
def test_no_figure_or_table_overflows_at_reading_widths(written, width):
    """At 1400 px (a laptop) and 800 px (half a screen) nothing is cut off at the right edge; a
    screenshot of each width is kept beside the report to look at."""
    run_dir = written[0]
    driver = start_browser(width=width, height=3000)
    try:
        driver.get((run_dir / "report.html").resolve().as_uri())
        # the window's inner width, not its outer size, is what the page lays out in
        inner = driver.execute_script("return window.innerWidth")
        driver.set_window_size(width + (width - inner), 3000)
        assert page_overflow(driver) == []
        shot = screenshot(driver, run_dir / f"report_screenshot_{width}px.png")
        assert shot.stat().st_size > 10_000
    finally:
        driver.quit()
