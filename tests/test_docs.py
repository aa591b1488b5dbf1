"""The documentation is true: every Python block of the README and docs/ runs (or is marked
an excerpt), every `>>>` example runs as a doctest, every relative link and anchor resolves,
and docs/config.md is what tools/config_reference.py writes."""

import doctest
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
EXCERPT = "<!-- excerpt -->"
FENCE = re.compile(r"(?P<before>[^\n]*)\n```python\n(?P<code>.*?)```", re.S)


def python_blocks(page):
    """(code, is marked an excerpt) of every ```python block of `page`."""
    return [
        (m.group("code"), m.group("before").strip() == EXCERPT)
        for m in FENCE.finditer("\n" + page.read_text())
    ]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_python_block_runs_or_is_an_excerpt(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for code, excerpt in python_blocks(page):
        if excerpt:
            compile(code, str(page), "exec")  # an excerpt is still valid Python
        else:
            exec(compile(code, str(page), "exec"), {})


@pytest.mark.multi_backend
def test_the_readme_block_trains_a_model():
    code, excerpt = python_blocks(ROOT / "README.md")[0]
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert not excerpt and len(namespace["model"].history.history["loss"]) == 1


def _anchor(heading):
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page):
    return {_anchor(h) for h in re.findall(r"^#+ (.*)$", page.read_text(), re.M)}


def broken_links(page):
    """The relative links of `page` (outside code blocks) to a missing file or heading."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(target)
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(target)
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_and_anchor_resolves(page):
    assert broken_links(page) == []


def test_a_broken_link_or_anchor_is_found(tmp_path):
    (tmp_path / "other.md").write_text("## What is guaranteed\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n[a](missing.md) [b](#title) [c](#nothing) [d](other.md#what-is-guaranteed)\n"
        "[e](other.md#missing) [f](https://example.org/x)\n```\n[g](in-code.md)\n```\n"
    )
    assert broken_links(page) == ["missing.md", "#nothing", "other.md#missing"]


def test_the_config_reference_is_up_to_date():
    from asc_keras.config_reference import reference

    assert (ROOT / "docs" / "config.md").read_text() == reference(), (
        "docs/config.md is out of date: run python tools/config_reference.py"
    )


DOCTEST_MODULES = sorted(
    ".".join(path.relative_to(ROOT).with_suffix("").parts)
    for path in (ROOT / "asc_keras").rglob("*.py")
    if ">>>" in path.read_text()
)


def test_the_doctests_are_found():
    assert "asc_keras.layers.residual_norm" in DOCTEST_MODULES
    assert "asc_keras.run_folder" in DOCTEST_MODULES


@pytest.mark.parametrize("name", DOCTEST_MODULES)
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0, result
