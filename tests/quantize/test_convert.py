import numpy as np
import pytest

from asc_keras import ds_flexinet
from asc_keras.quantize.convert import NotInt8Error, check_int8, convert
from asc_keras.quantize.twin import build_twin


def test_int8_conversion_passes_the_check_and_float_is_refused():
    twin = build_twin(ds_flexinet("sm1"))
    batch = np.random.default_rng(0).normal(-4, 3, (8, 256, 64, 1)).astype(np.float32)
    ops = check_int8(convert(twin, [batch]), "post-training int8 sm1")
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "RSQRT"} <= set(ops)
    assert "MEAN" not in ops  # every mean is an average pool: CMSIS-NN runs it on a Cortex-M
    assert "FULLY_CONNECTED" not in ops  # the head converts as a 1x1 convolution
    with pytest.raises(NotInt8Error, match=r"float sm1 computes in floating point in \d+ op"):
        check_int8(convert(twin, int8=False), "float sm1")
    with pytest.raises(ValueError, match="representative"):
        convert(twin)
