"""A DCASE 2025 Task 1 inference package from finished run folders (`tools/package.py`).

    OUT/NAME/                        the pip-installable project (`pip install OUT/NAME`)
        pyproject.toml
        NAME/__init__.py
        NAME/_runtime.py             asc_keras/submission/runtime.py: numpy, soundfile, soxr
                                     and ai-edge-litert only
        NAME/NAME_K.py               system K: load_model, load_inputs, get_model_for_device,
                                     predict (the challenge's inference API)
        NAME/resources/system_K/     system.json, frontend.tflite, general.tflite, DEVICE.tflite
    OUT/NAME_K.meta.yaml             system K's meta information (asc_keras.submission.meta)
    OUT/NAME_K.output.csv            with an evaluation set: the DCASE output of system K

One run folder is one system (its general model and its device models); up to four systems,
indices K = index, index + 1, ...
"""

import dataclasses
import importlib.metadata
import json
import re
import shutil
import tempfile
from pathlib import Path

from asc_keras.complexity import RULES, system_complexity
from asc_keras.config import load_config
from asc_keras.data.tau22 import CLASSES, resolve_data_root
from asc_keras.errors import UserError
from asc_keras.inference import GENERAL, system_front_end, system_paths
from asc_keras.run_folder import quantized_folder

# [Last name of the corresponding author]_[Abbreviation of the institute]_task1
NAME = re.compile(r"[A-Z][A-Za-z-]*_[A-Za-z0-9-]+_task1")
MAX_SYSTEMS = 4
RUNTIME_REQUIREMENTS = ("numpy", "soundfile", "soxr", "ai-edge-litert")

MODULE = '''"""DCASE 2025 Task 1 system {index} of {name}: packaged by asc_keras from the run folder
{run} ({kind} models; devices with their own model: {devices}).

The challenge's inference API. Logits come back as torch tensors when torch is installed
(what the challenge's evaluation script expects), else as numpy arrays.
"""

from importlib import resources
from pathlib import Path

from {name} import _runtime

SYSTEM = "system_{index}"


def load_model(model_file_path=None):
    """The system (front end and one model per device); `model_file_path`: another system
    folder (default: the packaged one)."""
    folder = model_file_path or resources.files(__package__) / "resources" / SYSTEM
    return _runtime.System(Path(str(folder)))


def load_inputs(file_paths, device_ids, model):
    """The log-mel input of each file, (1, mels, frames, 1), in order."""
    return _runtime.as_tensors(x[None] for x in _runtime.log_mels(model, file_paths))


def get_model_for_device(model, device_id):
    """The classifier of `device_id`: its own, or the general one."""
    return model.model_for(device_id)


def predict(file_paths, device_ids, model_file_path=None, use_cuda=False, batch_size=64):
    """(logits of each file, class order); each file classified by its device's model.
    `use_cuda` is accepted for the challenge's scripts: LiteRT runs on the CPU."""
    if len(file_paths) != len(device_ids):
        raise ValueError(f"{{len(file_paths)}} files but {{len(device_ids)}} device ids")
    model = load_model(model_file_path)
    inputs = _runtime.log_mels(model, file_paths)
    logits = _runtime.classify(model, inputs, device_ids, batch_size)
    return _runtime.as_tensors(logits), list(model.classes)
'''

PYPROJECT = """[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "{name}"
version = "1.0.0"
description = "DCASE 2025 Task 1 inference package (asc_keras)"
requires-python = ">=3.10"
dependencies = {dependencies}

[tool.setuptools]
packages = ["{name}"]

[tool.setuptools.package-data]
"{name}" = ["resources/*/*"]
"""


@dataclasses.dataclass
class Packaged:
    run: Path
    index: int
    models: dict  # device (or "general") -> model file
    config: object
    data_root: Path  # the development dataset: its evaluation split gives the meta file's results
    complexity: list  # system_complexity's rows (DCASE 2025 rules), one per model


def check_request(runs, name, index, kind, data_root=None):
    """The systems to package, each run checked; a `UserError` (one line) before anything is
    written: a name not in the challenge's form, an index out of 1..4, a run without the
    models asked for, a model over the DCASE 2025 limits, runs with different class orders,
    no development dataset (`data_root`, else the run's data.root)."""
    if not NAME.fullmatch(name):
        raise UserError(
            f"--name {name!r}: expected the challenge's label, [Last name]_[Institute "
            f"abbreviation]_task1, e.g. Schmid_CPJKU_task1"
        )
    last = index + len(runs) - 1
    if index < 1 or last > MAX_SYSTEMS:
        raise UserError(
            f"--index {index} with {len(runs)} run folder(s) gives systems {index}..{last}; "
            f"the challenge takes systems 1 to {MAX_SYSTEMS}"
        )
    systems, orders = [], {}
    for offset, run in enumerate(map(Path, runs)):
        paths = system_paths(run, kind)
        if kind == "float":  # the float TFLite models of the QAT stages
            paths = {
                d: quantized_folder(run, None if d == GENERAL else d) / "model_float.tflite"
                for d in paths
            }
            missing = [str(p) for p in paths.values() if not p.is_file()]
            if missing:
                raise UserError(f"{run}: no float TFLite model {missing[0]} (the QAT stage)")
        complexity = system_complexity(run, kind, RULES["dcase2025"])
        for row in complexity:
            if not row["within_limits"]:
                raise UserError(
                    f"{run}: model {row['model']} is over the DCASE 2025 limits: "
                    f"{'; '.join(row['broken'])}"
                )
        config = load_config(run / "config.yaml")
        orders[run] = CLASSES[: config.model.num_classes]
        try:
            root = resolve_data_root(config, data_root)
        except UserError as error:
            raise UserError(
                f"{run}: the meta file's development results need its dataset (--data-root): "
                f"{error}"
            ) from None
        systems.append(Packaged(run, index + offset, paths, config, root, complexity))
    if len(set(orders.values())) > 1:
        listed = "; ".join(f"{run}: {list(order)}" for run, order in orders.items())
        raise UserError(f"the runs give different class orders: {listed}")
    return systems


def requirements():
    """The runtime's dependencies with asc_keras's own version ranges."""
    found = {}
    for requirement in importlib.metadata.requires("asc_keras") or ():
        project = re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower()
        if project in RUNTIME_REQUIREMENTS:
            found[project] = requirement.split(";")[0].strip()
    return [found.get(project, project) for project in RUNTIME_REQUIREMENTS]


def write_system(system, folder, kind):
    """The system folder of one run: system.json, frontend.tflite and one model per device."""
    folder.mkdir(parents=True)
    config = system.config
    system_front_end(system.run)  # RUN/frontend.tflite, made on first use
    shutil.copyfile(system.run / "frontend.tflite", folder / "frontend.tflite")
    models = {}
    for device, path in system.models.items():
        models[device] = f"{device}.tflite"
        shutil.copyfile(path, folder / models[device])
    spec = {
        "classes": list(CLASSES[: config.model.num_classes]),
        "sample_rate": config.data.sample_rate,
        "samples": int(round(config.data.sample_rate * config.data.duration)),
        "frontend": "frontend.tflite",
        "models": models,
        "kind": kind,
        "run": str(system.run.resolve()),
    }
    (folder / "system.json").write_text(json.dumps(spec, indent=2) + "\n")


def write_package(systems, out, name, kind):
    """Writes OUT/NAME (the installable project) through a temporary folder beside it, moved
    into place when complete; returns its path."""
    from asc_keras.submission import runtime

    out = Path(out)
    target = out / name
    if target.exists():
        raise UserError(f"{target} exists: choose another -o or remove it")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".tmp-package-") as scratch:
        project = Path(scratch) / name
        package = project / name
        package.mkdir(parents=True)
        (package / "__init__.py").write_text(f'"""DCASE 2025 Task 1 inference: {name}."""\n')
        shutil.copyfile(runtime.__file__, package / "_runtime.py")
        for system in systems:
            devices = ", ".join(d for d in system.models if d != GENERAL) or "none"
            module = MODULE.format(
                name=name, index=system.index, run=system.run.resolve(), kind=kind, devices=devices
            )
            (package / f"{name}_{system.index}.py").write_text(module)
            write_system(system, package / "resources" / f"system_{system.index}", kind)
        dependencies = json.dumps(requirements())
        (project / "pyproject.toml").write_text(
            PYPROJECT.format(name=name, dependencies=dependencies)
        )
        project.rename(target)
    return target
