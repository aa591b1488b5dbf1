import concurrent.futures
import fcntl
import json
import os
import shutil
import subprocess

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# XLA (every JAX step, TensorFlow's jit_compile) compiles each test's new model once and runs
# it a few steps: the tests check what the code computes, not how fast compiled code runs,
# so XLA skips its expensive optimisations here (this process and the tools it starts).
XLA_TEST_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {XLA_TEST_FLAGS}".strip()

import keras  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402

from tests.helpers import (  # noqa: E402
    call_tool,
    kill_every_stage_then_resume,
    train_command,
    wait_for,
)

# `make test` runs two pytest-xdist workers. Tests that share the one tiny recipe run go to
# one worker (else each worker would train it), and so do the multi-process distribution
# tests (they would compete for the same cores and ports) and the tests of each module whose
# module-scoped fixture starts processes (else each worker would start them); every other
# test is dealt out one at a time.
WORKER_GROUPS = {
    "test_end_to_end.py": "tiny_recipe",
    "test_fault_injection.py": "tiny_recipe",
    "test_predict.py": "tiny_recipe",
    "test_device_models.py": "tiny_recipe",
    "test_distribution.py": "distribution",
    "test_qat.py": "qat_checks",
    "test_cross_backend.py": "cross_backend",
    "test_mcu.py": "mcu",
}

try:
    from xdist.scheduler import LoadScopeScheduling
except ImportError:  # plain pytest: one process, nothing to schedule
    LoadScopeScheduling = None

if LoadScopeScheduling is not None:

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            return WORKER_GROUPS.get(nodeid.split("::", 1)[0].rsplit("/", 1)[-1], nodeid)

    def pytest_xdist_make_scheduler(config, log):
        return GroupScheduling(config, log)


def pytest_collection_modifyitems(config, items):
    """A test marked `backends(...)` is left out in the pytest run of any other backend."""
    backend = keras.backend.backend()
    kept, left_out = [], []
    for item in items:
        marker = item.get_closest_marker("backends")
        (left_out if marker and backend not in marker.args else kept).append(item)
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = kept


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory, worker_id):
    """A small synthetic dataset in the TAU22 layout, made once per pytest run: the xdist
    workers share it (and the waveform caches in it, which take their own lock). Tests that
    change a dataset copy it first."""
    from asc_keras.data.synthetic import make_synthetic_dataset

    shared = tmp_path_factory.getbasetemp()
    if worker_id != "master":  # the workers' temporary folders lie in one folder
        shared = shared.parent
    root = shared / "tau22"
    with open(shared / "tau22.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "made").is_file():
            shutil.rmtree(root, ignore_errors=True)
            make_synthetic_dataset(
                root,
                train_clips_a=4,
                train_clips_other=2,
                evaluate_clips=1,
                impulse_responses=4,
                progress=False,
            )
            (root / "made").touch()
    return root


@pytest.fixture(scope="session")
def synthetic_config(synthetic_root, tmp_path_factory):
    from asc_keras.config import config_from_dict

    return config_from_dict(
        {
            "data": {"root": str(synthetic_root), "cache_dir": str(tmp_path_factory.mktemp("c"))},
            "augment": {"dir": {"folder": "impulse_responses"}},
            "training": {"batch_size": 16},
        }
    )


@pytest.fixture(scope="session")
def tiny_recipe(synthetic_root, tmp_path_factory):
    """The whole recipe in miniature, run once through tools/train.py with a 128-bin front end
    (hop 640: inputs of 128 x 50): one teacher, fusion, the distilled student, the student on
    labels alone, QAT (2 free epochs, 1 frozen), int8 export and checks, and a device model
    for device b (fine-tuning and QAT). While it trains, a
    second run on its folder is tried (and refused), and a run killed at every stage is
    started beside it (`tiny_recipe["killed"]`)."""
    folder = tmp_path_factory.mktemp("faults")
    (folder / "teacher.yaml").write_text(
        yaml.safe_dump(
            {
                "augment": {"dir": {"probability": 0.4}},  # the run's folder
                "frontend": {"n_mels": 128, "hop_length": 640},
                "model": {"architecture": "cp_resnet", "width": 4},
                "training": {"epochs": 4, "batch_size": 16, "warmup_epochs": 1},
                "distillation": {"enabled": False},
            }
        )
    )
    config = folder / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data": {"root": str(synthetic_root), "cache_dir": str(folder / "cache")},
                "augment": {"dir": {"folder": "impulse_responses", "energy_threshold": "auto"}},
                # Not the paper's front end (256 bins, hop 500): every stage and tool must
                # take the shape from the config. Half the input also halves the test's time.
                "frontend": {"n_mels": 128, "hop_length": 640},
                "model": {"variant": "sm1"},
                "training": {"epochs": 4, "batch_size": 16, "warmup_epochs": 1},
                "teachers": {"train_count": 1, "config": "teacher.yaml"},
                "distillation": {"label_weight": 0.1, "compare_without_teacher": True},
                "quantization": {
                    "student": "best",
                    "epochs": 3,
                    "freeze_epochs": 1,
                    "representative_batches": 2,
                    "micro_check_inputs": 20,
                },
                # DCASE 2025: a fine-tuned copy of the int8 student for device b (20 clips).
                "device_models": {
                    "devices": ["b"],
                    "epochs": 2,
                    "batch_size": 8,
                    "warmup_epochs": 0,
                },
            }
        )
    )
    whole = folder / "whole"
    command, env = train_command(config, whole)
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # The killed run of test_fault_injection.py goes on beside it: two runs share the two
    # cores better than one (much of each stage's start is single-threaded compilation).
    pool = concurrent.futures.ThreadPoolExecutor(1)
    killed = pool.submit(kill_every_stage_then_resume, config, folder / "killed")
    pool.shutdown(wait=False)
    # A second run on the same folder while the first one trains is refused, and changes
    # nothing of the first's.
    assert wait_for(whole / "teachers" / "teacher-0" / "checkpoints", first)
    config_before = (whole / "config.yaml").read_bytes()
    second = subprocess.run(command, env=env, capture_output=True, text=True)
    out, err = first.communicate()
    assert first.returncode == 0, err.decode()[-3000:]
    return {
        "config": config,
        "whole": whole,
        "stdout": out.decode(),
        "stderr": err.decode(),
        "second": second,
        "config_before": config_before,
        "killed": killed,  # a Future: what kill_every_stage_then_resume saw
    }


@pytest.fixture(scope="session")
def tiny_evaluated(tiny_recipe, tmp_path_factory):
    """tools/evaluate.py (in this process) on a model of the tiny recipe run (a path in its
    folder), with the run's config, run once per model and kernel set: returns a function
    (model, reference=False) -> (its completed process, its report)."""
    done = {}

    def evaluate(model, reference=False):
        if (model, reference) not in done:
            out = tmp_path_factory.mktemp("evaluated")
            flags = ["--reference-kernels"] if reference else []
            model_path = tiny_recipe["whole"] / model
            ran = call_tool("evaluate", model_path, tiny_recipe["config"], "--out", out, *flags)
            assert ran.returncode == 0, ran.stderr[-3000:]
            [report] = out.glob("*_evaluate*.json")
            done[model, reference] = ran, json.loads(report.read_text())
        return done[model, reference]

    return evaluate
