import re

import pytest

from asc_keras.quantize.c_array import write_c_array


def test_c_array_holds_the_model_bytes(tmp_path):
    data = bytes(range(256)) * 3 + b"\x07"
    header, source = write_c_array(data, tmp_path / "asc_model")
    assert "extern const unsigned char asc_model[];" in header.read_text()
    text = source.read_text()
    values = bytes(int(v, 16) for v in re.findall(r"0x([0-9a-f]{2})", text))
    assert values == data
    assert f"asc_model_len = {len(data)};" in text and "alignas(16)" in text


def test_bad_array_name_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not a valid C identifier"):
        write_c_array(b"\x00", tmp_path / "m", name="9lives")
