"""The microcontroller path: sources assembled from local repositories, the firmware's generated
parts, QEMU's report, the errors for what is missing; and, where the Arm toolchain, QEMU and a
TFLite Micro checkout ($ASC_TFLM_DIR) are present, a model built, emulated and compared."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from asc_keras.mcu import firmware, sources
from asc_keras.mcu.firmware import FirmwareError, c_inputs, firmware_config, parse_output
from asc_keras.mcu.sources import SourcesError

REPO = Path(__file__).resolve().parent.parent


def git(folder, *args):
    return subprocess.run(
        ["git", "-C", str(folder), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def make_repository(folder, files, tag=None):
    folder.mkdir(parents=True)
    git(folder, "init", "-q")
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    git(folder, "add", "-A")
    git(folder, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "pin")
    if tag:
        git(folder, "tag", tag)
    return tag or git(folder, "rev-parse", "HEAD")


def fake_checkout(root, pins):
    """A TFLite Micro checkout reduced to what the assembler reads: the pinning scripts and
    the two patches."""
    make = root / sources.MAKE_DIR
    (make / "ext_libs").mkdir(parents=True)
    (make / "Makefile").write_text("# fake\n")
    (make / "ext_libs/cmsis_download.sh").write_text(
        f'  ZIP_PREFIX="{pins["ARM-software/CMSIS_6"]}"\n'
        '  CMSIS_URL="http://github.com/ARM-software/CMSIS_6/archive/${ZIP_PREFIX}.zip"\n'
        f'  ZIP_PREFIX="{pins["ARM-software/Cortex_DFP"]}"\n'
        '  CMSIS_DFP_URL="http://github.com/ARM-software/Cortex_DFP/archive/${ZIP_PREFIX}.zip"\n'
    )
    (make / "ext_libs/cmsis_nn_download.sh").write_text(
        f'ZIP_PREFIX_NN="{pins["ARM-software/CMSIS-NN"]}"\n'
        'CMSIS_NN_URL="http://github.com/ARM-software/CMSIS-NN/archive/${ZIP_PREFIX_NN}.zip"\n'
    )
    (make / "third_party_downloads.inc").write_text(
        f'GEMMLOWP_URL := "https://github.com/google/gemmlowp/archive/{pins["google/gemmlowp"]}.zip"\n'
        f'RUY_URL="https://github.com/google/ruy/archive/{pins["google/ruy"]}.zip"\n'
        "FLATBUFFERS_URL := "
        f'"https://github.com/google/flatbuffers/archive/refs/tags/{pins["google/flatbuffers"]}.zip"\n'
        "KISSFFT_URL := "
        f'"https://github.com/mborgerding/kissfft/archive/refs/tags/{pins["mborgerding/kissfft"]}.zip"\n'
    )
    patch = "--- a/{0}\n+++ b/{0}\n@@ -1 +1 @@\n-original\n+patched by TFLite Micro\n"
    (make / "flatbuffers.patch").write_text(patch.format("include.h"))
    (root / "third_party/kissfft").mkdir(parents=True)
    (root / "third_party/kissfft/kissfft.patch").write_text(patch.format("kiss_fft.h"))


@pytest.fixture
def local_repositories(tmp_path):
    """Local git repositories of every pinned download (as a `fetch` leaves them:
    owner+name/repo), and their pins."""
    repos, pins = tmp_path / "repos", {}
    for repository in sources.LAYOUT:
        files = {"README": repository}
        if repository == "google/flatbuffers":
            files |= {"include.h": "original\n", "BUILD": "bazel", "sub/BUILD.bazel": "bazel"}
        if repository == "mborgerding/kissfft":
            files |= {"kiss_fft.h": "original\n"}
        tag = {"google/flatbuffers": "v1.2.3", "mborgerding/kissfft": "v130"}.get(repository)
        folder = repos / repository.replace("/", "+") / "repo"
        pins[repository] = make_repository(folder, files, tag)
    return repos, pins


def test_sources_are_assembled_from_local_repositories_at_the_pinned_commits(
    local_repositories, tmp_path
):
    repos, pins = local_repositories
    root = tmp_path / "tflm"
    fake_checkout(root, pins)
    downloads = sources.downloads(root)
    (downloads / "ruy.partial").mkdir(parents=True)  # left by an interrupted run
    made = sources.assemble(root, [repos], log=lambda line: None)
    assert len(made) == len(sources.LAYOUT)
    assert (downloads / "cmsis/README").read_text() == "ARM-software/CMSIS_6"
    assert (downloads / "cmsis/Cortex_DFP/README").read_text() == "ARM-software/Cortex_DFP"
    assert (downloads / "flatbuffers/include.h").read_text() == "patched by TFLite Micro\n"
    assert not (downloads / "flatbuffers/BUILD").exists()
    assert not (downloads / "flatbuffers/sub/BUILD.bazel").exists()
    assert (downloads / "kissfft/kiss_fft.h").read_text() == "patched by TFLite Micro\n"
    assert (downloads / "pigweed").is_dir() and not (downloads / "ruy.partial").exists()
    assert sources.find_tflm(root) == root
    # A second run keeps what is there.
    assert sources.assemble(root, [repos], log=lambda line: None) == []


def test_a_missing_pin_or_repository_is_a_clear_error(local_repositories, tmp_path):
    repos, pins = local_repositories
    root = tmp_path / "tflm"
    fake_checkout(root, pins)
    with pytest.raises(SourcesError, match=r"no local copy of ARM-software/CMSIS_6 .* --network"):
        sources.assemble(root, [tmp_path / "elsewhere"], log=lambda line: None)
    shutil.rmtree(repos / "google+ruy")
    make_repository(repos / "google+ruy" / "repo", {"README": "another"})
    with pytest.raises(SourcesError, match=r"does not hold .* of google/ruy"):
        sources.assemble(root, [repos], log=lambda line: None)
    (root / sources.MAKE_DIR / "third_party_downloads.inc").write_text("")
    with pytest.raises(SourcesError, match=r"no pinned version of .*google/gemmlowp"):
        sources.pinned_downloads(root)


def test_missing_sources_and_tools_say_what_to_pass_or_install(tmp_path, monkeypatch):
    monkeypatch.delenv(sources.TFLM_ENV, raising=False)
    with pytest.raises(SourcesError, match=r"pass --tflm DIR or set ASC_TFLM_DIR"):
        sources.find_tflm(None)
    with pytest.raises(SourcesError, match=r"is not a TFLite Micro checkout"):
        sources.find_tflm(tmp_path)
    _, pins = {}, dict.fromkeys(sources.LAYOUT, "0" * 40)
    fake_checkout(tmp_path / "tflm", pins)
    with pytest.raises(SourcesError, match=r"third-party folders .*cmsis_nn.* are missing"):
        sources.find_tflm(tmp_path / "tflm")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(SourcesError, match=r"qemu-system-arm not found .*apt-get install"):
        sources.find_tool("qemu-system-arm")
    with pytest.raises(SourcesError, match=r"arm-none-eabi-nm not found .*gcc-arm-none-eabi"):
        sources.find_tool("arm-none-eabi-nm")


def test_the_tool_refuses_with_one_line_when_sources_are_missing(tmp_path):
    env = {**os.environ, "ASC_TFLM_DIR": str(tmp_path / "nothing"), "PATH": os.environ["PATH"]}
    done = subprocess.run(
        [sys.executable, str(REPO / "tools/mcu.py"), str(tmp_path / "model.tflite")],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
    )
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert "not found on PATH" in errors[0] or "not a TFLite Micro checkout" in errors[0]


def c_bytes(source, name):
    body = re.search(rf"{name}\[\] = \{{(.*?)\}};", source, re.DOTALL)[1]
    return bytes(int(value, 16) for value in re.findall(r"0x([0-9a-f]{2})", body))


def test_the_firmware_inputs_array_holds_the_inputs_in_order():
    inputs = np.arange(-60, 60, dtype=np.int8).reshape(3, 5, 8)
    header, source = c_inputs(inputs)
    assert c_bytes(source, "asc_inputs") == inputs.tobytes()
    assert "asc_input_count = 3;" in source and "asc_input_bytes = 40;" in source
    assert "alignas(16)" in source and "extern const unsigned int asc_input_bytes;" in header


def test_the_firmware_registers_only_the_models_ops(tiny_tflite):
    calls = firmware.resolver_calls(tiny_tflite)
    assert calls == sorted(calls) and len(set(calls)) == len(calls)
    assert {"AddConv2D", "AddMean", "AddFullyConnected"} <= set(calls)
    config = firmware_config(calls)
    assert f"#define ASC_OP_COUNT {len(calls)}" in config
    assert (
        "(r).AddConv2D();" in config and f"#define ASC_ARENA_BYTES {firmware.ARENA_BYTES}" in config
    )


def test_the_linker_script_gets_the_boards_memory():
    script = firmware.linker_script(firmware.CPUS["cortex-m55"])
    assert "ORIGIN = 0x21000000, LENGTH = 0x400000" in script and "@" not in script
    assert "CONST (r) : ORIGIN = 0x1000000, LENGTH = 0x200000" in script


REPORT = """CALIBRATION 8000000 200000
ARENA 131072
INPUT 0 1500000
OP 0 CONV_2D 1000000
OP 1 MEAN 400000
OP 2 CONV_2D 100000
OUTPUT 0 0a80ff
INPUT 1 1600000
OUTPUT 1 0b80fe
DONE
"""


def test_qemus_report_is_read_into_instructions_and_outputs():
    emulation = parse_output(REPORT)
    assert emulation.instructions_per_tick == 40
    assert emulation.arena_bytes == 131072
    assert emulation.instructions == [60e6, 64e6]
    assert emulation.ops == [("CONV_2D", 40e6), ("MEAN", 16e6), ("CONV_2D", 4e6)]
    assert emulation.outputs == [bytes([10, 128, 255]), bytes([11, 128, 254])]


@pytest.mark.parametrize(
    "text, message",
    [
        (REPORT.replace("DONE\n", ""), "stopped before DONE"),
        (REPORT.replace("DONE", "ERROR Invoke failed on input 1"), "Invoke failed on input 1"),
        (REPORT.replace("OUTPUT 1 0b80fe\n", ""), "incomplete"),
        (REPORT.replace("200000", "0"), "SysTick did not count"),
    ],
)
def test_a_broken_report_is_an_error_with_the_output(text, message):
    with pytest.raises(FirmwareError, match=message):
        parse_output(text)


@pytest.fixture(scope="module")
def tiny_tflite():
    """A small fully-int8 model with the op kinds of DS-FlexiNet (conv, mean, dense)."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    kernel = tf.constant(rng.standard_normal((3, 3, 1, 8)), tf.float32)
    dense = tf.constant(rng.standard_normal((8, 10)), tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([1, 32, 16, 1], tf.float32)])
    def model(x):
        y = tf.nn.relu(tf.nn.conv2d(x, kernel, 1, "SAME"))
        return tf.matmul(tf.reduce_mean(y, axis=[1, 2]), dense)

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [model.get_concrete_function()], model
    )
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: (
        [rng.standard_normal((1, 32, 16, 1)).astype(np.float32)] for _ in range(20)
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


def emulator_present():
    tflm = os.environ.get(sources.TFLM_ENV)
    tools = all(shutil.which(t) for t in ("arm-none-eabi-g++", "qemu-system-arm"))
    return tools and tflm and (Path(tflm) / sources.MAKE_DIR / "downloads/cmsis_nn").is_dir()


@pytest.mark.mcu
@pytest.mark.skipif(
    not emulator_present(),
    reason="needs arm-none-eabi-g++, qemu-system-arm and ASC_TFLM_DIR (tools/mcu_sources.py)",
)
def test_a_model_on_an_emulated_cortex_m4_matches_litert_bit_for_bit(tiny_tflite):
    from asc_keras.evaluation.tflite import TFLiteClassifier
    from asc_keras.mcu.measure import measure, random_inputs

    inputs = random_inputs(TFLiteClassifier(tiny_tflite, reference_kernels=True), 5)
    result = measure(
        tiny_tflite, inputs, cpu="cortex-m4", kernels="cmsis-nn", log=lambda line: None
    )
    assert result["identical_outputs"] == 5 and result["max_output_difference"] == 0
    assert set(result["instructions_per_op"]) >= {"CONV_2D", "MEAN", "FULLY_CONNECTED"}
    assert 0 < sum(result["instructions_per_op"].values()) <= result["instructions"]
    assert 0 < result["arena_bytes"] < firmware.ARENA_BYTES
    assert result["flash_bytes"] > result["model_bytes"] > 0


def test_the_recipe_goes_on_without_an_emulator_and_says_why(tiny_tflite, monkeypatch):
    from asc_keras.mcu.summary import describe_cortex_m4
    from asc_keras.quantize.micro import cortex_m4_figures

    monkeypatch.delenv(sources.TFLM_ENV, raising=False)
    figures = cortex_m4_figures(tiny_tflite, np.zeros((2, 32, 16, 1), np.float32))
    assert figures["measured"] is False
    assert "ASC_TFLM_DIR" in figures["why"] or "apt-get install" in figures["why"]
    assert describe_cortex_m4(figures).startswith("Cortex-M4 (CMSIS-NN): not measured: ")


@pytest.mark.mcu
@pytest.mark.skipif(
    not emulator_present(),
    reason="needs arm-none-eabi-g++, qemu-system-arm and ASC_TFLM_DIR (tools/mcu_sources.py)",
)
def test_the_recipes_cortex_m4_figures_compare_classes_with_the_reported_model(tiny_tflite):
    from asc_keras.quantize.micro import cortex_m4_figures

    features = np.random.default_rng(1).standard_normal((4, 32, 16, 1)).astype(np.float32)
    figures = cortex_m4_figures(tiny_tflite, features)
    assert figures["measured"] and figures["inputs"] == 4
    assert figures["identical_outputs"] == 4 and figures["same_class_as_reported"] == 4
    assert figures["instructions"] > 0 and figures["flash_bytes"] > len(tiny_tflite)
