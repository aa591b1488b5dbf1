"""A `.tflite` model as a C source / header pair for firmware."""

import re
from pathlib import Path

from asc_keras.utils import atomic_write_text


def write_c_array(model_bytes, out_stem, name=None):
    """Writes OUT_STEM.h and OUT_STEM.cc holding the model as an aligned byte array."""
    out_stem = Path(out_stem)
    name = name or re.sub(r"\W", "_", out_stem.name)
    if not re.fullmatch(r"[A-Za-z_]\w*", name):
        raise ValueError(f"{name!r} is not a valid C identifier")
    guard = f"{name.upper()}_H_"
    header = (
        f"#ifndef {guard}\n#define {guard}\n\n"
        f"extern const unsigned char {name}[];\n"
        f"extern const unsigned int {name}_len;\n\n#endif  // {guard}\n"
    )
    rows = [
        ", ".join(f"0x{b:02x}" for b in model_bytes[i : i + 12])
        for i in range(0, len(model_bytes), 12)
    ]
    source = (
        f'#include "{out_stem.name}.h"\n\n'
        f"// {len(model_bytes)} bytes; 16-byte alignment as TFLite Micro expects.\n"
        f"alignas(16) const unsigned char {name}[] = {{\n  "
        + ",\n  ".join(rows)
        + f"\n}};\nconst unsigned int {name}_len = {len(model_bytes)};\n"
    )
    atomic_write_text(out_stem.with_suffix(".h"), header)
    atomic_write_text(out_stem.with_suffix(".cc"), source)
    return out_stem.with_suffix(".h"), out_stem.with_suffix(".cc")
