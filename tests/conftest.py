import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """A small synthetic dataset in the TAU22 layout, made once per test session."""
    from asc_keras.data.synthetic import make_synthetic_dataset

    root = tmp_path_factory.mktemp("tau22")
    make_synthetic_dataset(
        root,
        train_clips_a=4,
        train_clips_other=2,
        evaluate_clips=1,
        impulse_responses=4,
        progress=False,
    )
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
