"""The README's "use the layers in your own code" snippet runs as documented."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.multi_backend
def test_readme_fit_snippet_runs():
    section = README.read_text().split("## Use the layers in your own code", 1)[1]
    snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace = {}
    exec(compile(snippet, str(README), "exec"), namespace)
    assert namespace["model"].count_params() > 0
    assert len(namespace["model"].history.history["loss"]) == 1
