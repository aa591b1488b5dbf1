"""Opens a run's report.html in headless Chromium and checks what the browser shows.

    python tools/check_page.py runs/demo [--screenshot docs/report-page.png]

The browser must find every table of the page and decode every picture (each to a width
above zero); nothing may come from outside the file. Prints what it found; exit status 1 when
a check fails, 2 when there is no page or no browser (Debian: apt-get install chromium).
"""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

os.environ["ASC_KERAS_TOOL"] = "1"  # asc_keras then quiets TensorFlow's native logs (--verbose)

from asc_keras import cli  # noqa: E402
from asc_keras.errors import UserError  # noqa: E402

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
# Run by the browser on a copy of the page: records what it decoded in the DOM it dumps.
PROBE = """<script>
window.addEventListener("load", () => {
  const images = [...document.images];
  document.body.dataset.tables = document.querySelectorAll("table").length;
  document.body.dataset.images = images.length;
  document.body.dataset.decoded = images.filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.dataset.outside = performance.getEntriesByType("resource")
    .filter(r => !r.name.startsWith("data:")).length;
});
</script>"""


def find_browser(name=None):
    found = shutil.which(name) if name else next(filter(None, map(shutil.which, BROWSERS)), None)
    if not found:
        raise UserError(
            f"no browser {name or 'Chromium'} found: install it (Debian: apt-get install "
            f"chromium) or pass --browser PATH"
        )
    return found


def browse(browser, page, *flags):
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    done = subprocess.run(
        [*command, "--virtual-time-budget=10000", *flags, page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise UserError(f"{browser} failed on {page}: {done.stderr.strip()[-500:]}")
    return done.stdout


def check_page(page, browser, screenshot=None):
    """What the browser found on `page`: tables, images, images decoded, outside requests."""
    with tempfile.TemporaryDirectory() as folder:
        probed = Path(folder) / "page.html"
        probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
        dom = browse(browser, probed, "--dump-dom")
    found = {}
    for key in ("tables", "images", "decoded", "outside"):
        marker = f'data-{key}="'
        if marker not in dom:
            raise UserError(f"{page}: the browser did not finish loading the page")
        found[key] = int(dom.split(marker, 1)[1].split('"', 1)[0])
    if screenshot:
        Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
        shot = f"--screenshot={Path(screenshot).resolve()}"
        browse(browser, page, shot, "--window-size=1200,1500")
    return found


def main(argv=None):
    parser = cli.argument_parser(__doc__)
    parser.add_argument("run", help="run folder (or its report.html)")
    parser.add_argument("--screenshot", help="also save a 1200x1500 PNG of the page's top")
    parser.add_argument("--browser", help="Chromium executable (default: found on PATH)")
    args = parser.parse_args(argv)
    page = Path(args.run)
    page = page / "report.html" if page.is_dir() else page
    if not page.is_file():
        raise UserError(f"{page} does not exist (a run writes it at the end of every stage)")
    found = check_page(page.resolve(), find_browser(args.browser), args.screenshot)
    print(
        f"{page}: {found['tables']} tables, {found['decoded']} of {found['images']} pictures "
        f"decoded, {found['outside']} requests outside the file"
    )
    failed = found["decoded"] != found["images"] or found["outside"] or not found["tables"]
    if args.screenshot:
        print(f"screenshot: {args.screenshot}")
    return 1 if failed else 0


if __name__ == "__main__":
    cli.run(main)
