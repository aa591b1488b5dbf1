"""Installs that keep working: the installed versions lie in the declared ranges, every
private API use sits in asc_keras/compat.py, and a changed internal is one clear error."""

import importlib.metadata
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from asc_keras import compat

PACKAGE = Path(__file__).resolve().parents[1] / "asc_keras"


def test_every_installed_dependency_is_in_its_supported_range():
    checked = []
    for text in importlib.metadata.requires("asc_keras"):
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": "test"}):
            continue
        version = importlib.metadata.version(requirement.name)
        assert requirement.specifier.contains(version, prereleases=True), (text, version)
        checked.append(requirement.name)
    assert {"keras", "tensorflow-model-optimization", "ai-edge-litert", "torch"} <= set(checked)


# `name._private` where name is not self / cls (os._exit is public, despite its name), and
# imports of a package's private modules.
PRIVATE = re.compile(r"(?<![\w.])(?!self\b|cls\b|os\b)\w+(\.\w+)*\._[a-z]\w*|python\.core")


def test_private_apis_are_used_only_in_compat():
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "compat.py"
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if PRIVATE.search(line.split("#")[0])
    ]
    assert found == []


def test_the_pattern_finds_a_private_use():
    assert PRIVATE.search("model._flatten_layers(include_self=False)")
    assert PRIVATE.search("from tensorflow_model_optimization.python.core import x")
    assert not PRIVATE.search("self._owned = True; os._exit(1)")


def test_a_changed_internal_names_the_package_version_and_range():
    keras_version = importlib.metadata.version("keras")
    with pytest.raises(compat.CompatibilityError) as error:
        compat.all_layers(object())
    message = str(error.value)
    assert f"keras {keras_version} has no Layer._flatten_layers" in message
    assert "asc_keras supports keras <3.16,>=3.8" in message
    assert "constraints.txt" in message
    with pytest.raises(compat.CompatibilityError, match=r"ai-edge-litert [\d.]+ has no"):
        compat.op_details(object())
    with pytest.raises(compat.CompatibilityError, match=r"tf-keras [\d.]+ has no Model.compiled"):
        compat.build_legacy_model_for_fit(object(), None, None)
