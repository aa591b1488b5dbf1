"""Words for the emulated Cortex-M figures of a run (no imports: the run page uses it)."""


def describe_cortex_m4(mcu):
    """One line on the emulated Cortex-M4 figures, or why there are none."""
    if not mcu.get("measured"):
        return f"Cortex-M4 (CMSIS-NN): not measured: {mcu.get('why', 'no figures')}"
    return (
        f"Cortex-M4 (CMSIS-NN, emulated): {mcu['instructions'] / 1e6:.1f} M instructions per "
        f"inference, arena {mcu['arena_bytes']:,} bytes, flash {mcu['flash_bytes']:,} bytes; "
        f"outputs identical to LiteRT's reference kernels on {mcu['identical_outputs']} of "
        f"{mcu['inputs']}, class equal to the reported model's on "
        f"{mcu['same_class_as_reported']} of {mcu['inputs']}"
    )
