"""Logits of saved models on the Keras backend this process runs (KERAS_BACKEND), for
tests/models/test_cross_backend.py: one process per backend computes every case.

    python -m tests.models.backend_logits CASES.json

CASES.json is a list of cases; each writes its logits to case["out"] (.npy):
- {"variant", "norm", "weights", "inputs", "out"}: ds_flexinet(variant, norm=norm) with the
  weights of a `.weights.h5` file, on the spectrograms in `inputs` (.npy);
- {"model", "inputs", "out"}: a saved `.keras` model (the layers of asc_keras registered by
  the import) on the inputs in `inputs` (.npy).
The backend's name goes to CASES.json's folder as backend.txt.
"""

import json
import sys
from pathlib import Path

import keras
import numpy as np

import asc_keras
from asc_keras import ds_flexinet


def logits(case):
    inputs = np.load(case["inputs"])
    if "model" in case:
        model = keras.saving.load_model(case["model"])
        return keras.ops.convert_to_numpy(model(inputs))
    model = ds_flexinet(case["variant"], norm=case["norm"], input_shape=inputs.shape[1:])
    model.load_weights(case["weights"])
    return model.predict(inputs, verbose=0)


def main(path):
    path = Path(path)
    for case in json.loads(path.read_text()):
        np.save(case["out"], logits(case))
    (path.parent / "backend.txt").write_text(keras.backend.backend())


if __name__ == "__main__":
    assert asc_keras.__name__  # the import registers the custom layers for loading
    main(sys.argv[1])
