"""A `.tflite` model on an emulated Cortex-M: TFLite Micro firmware built with the Arm GCC
toolchain, run in QEMU, its outputs and instruction counts read back.

QEMU runs with `-icount shift=0`: virtual time advances one nanosecond per executed
instruction, so the SysTick ticks that the firmware records around each op convert to
instructions (the firmware calibrates ticks against a loop of known length). These are
instruction counts, not cycles: a real core stalls on memory and takes several cycles for
some instructions, so a latency derived from them at a clock is an estimate.
"""

import dataclasses
import os
import re
import shlex
import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np

from asc_keras.errors import UserError
from asc_keras.mcu.sources import MAKE_DIR, find_tflm, find_tool
from asc_keras.quantize.c_array import write_c_array
from asc_keras.utils import atomic_write_text


@dataclasses.dataclass(frozen=True)
class Cpu:
    arch: str  # TFLite Micro's TARGET_ARCH (with the FPU)
    machine: str  # QEMU board
    code: tuple  # (origin, length) of the board memory for the vector table and code
    const: tuple  # for constants: the model, the inputs, data's initial values
    ram: tuple  # (origin, length) of its data memory
    mhz: int  # a typical part's clock, for the latency estimate


MB = 1 << 20
CPUS = {
    # MPS2 (AN386 and AN500 alike, as QEMU 7.2's `info mtree` shows them): 4 MB SSRAM from 0
    # (code, then constants), 4 MB SSRAM at 0x20000000.
    "cortex-m4": Cpu("cortex-m4+fp", "mps2-an386", (0, MB), (MB, 3 * MB), (0x20000000, 4 * MB), 80),
    "cortex-m7": Cpu(
        "cortex-m7+fp", "mps2-an500", (0, MB), (MB, 3 * MB), (0x20000000, 4 * MB), 216
    ),
    # MPS3 AN547: 512 KB ITCM from 0, 2 MB SRAM at 0x01000000, 4 MB ISRAM at 0x21000000.
    "cortex-m55": Cpu(
        "cortex-m55", "mps3-an547", (0, MB // 2), (0x01000000, 2 * MB), (0x21000000, 4 * MB), 160
    ),
}
KERNELS = {"cmsis-nn": "cmsis_nn", "reference": None}
ARENA_BYTES = 2 * MB  # reserved in the firmware (float sm4 needs 1.1 MB); what is used is reported


class FirmwareError(UserError, RuntimeError):
    """The build or the emulated run failed; the message carries the tool's output."""


# Ops whose resolver method is not the capitalised parts of their name.
RESOLVER_NAMES = {"BATCH_MATMUL": "BatchMatMul"}


def resolver_calls(model_bytes):
    """The `MicroMutableOpResolver` method of every builtin op the model uses, e.g. AddConv2D."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(bytes(model_bytes), 0))
    names = {value: name for name, value in vars(schema.BuiltinOperator).items()}
    calls = []
    for code in model.operatorCodes:
        number = max(code.builtinCode, code.deprecatedBuiltinCode)
        if number == schema.BuiltinOperator.CUSTOM:
            raise FirmwareError(f"custom op {code.customCode!r} has no TFLite Micro kernel here")
        name = RESOLVER_NAMES.get(names[number]) or "".join(
            part if part[0].isdigit() else part.capitalize() for part in names[number].split("_")
        )
        calls.append(f"Add{name}")
    return sorted(set(calls))


def c_inputs(inputs):
    """inputs.h / inputs.cc text: the input tensors, in order, as one aligned byte array."""
    inputs = np.ascontiguousarray(inputs)
    count, size = len(inputs), inputs[0].nbytes
    data = inputs.tobytes()
    rows = [", ".join(f"0x{b:02x}" for b in data[i : i + 16]) for i in range(0, len(data), 16)]
    header = (
        "#ifndef ASC_INPUTS_H_\n#define ASC_INPUTS_H_\n\n"
        "extern const unsigned char asc_inputs[];\n"
        "extern const unsigned int asc_input_count;\n"
        "extern const unsigned int asc_input_bytes;\n\n#endif  // ASC_INPUTS_H_\n"
    )
    source = (
        '#include "inputs.h"\n\n'
        f"// {count} inputs of {size} bytes ({inputs.dtype}, shape {inputs.shape[1:]}).\n"
        "alignas(16) const unsigned char asc_inputs[] = {\n  "
        + ",\n  ".join(rows)
        + f"\n}};\nconst unsigned int asc_input_count = {count};\n"
        f"const unsigned int asc_input_bytes = {size};\n"
    )
    return header, source


def firmware_config(calls, arena_bytes=ARENA_BYTES):
    adds = " ".join(f"(r).{call}();" for call in calls)
    return (
        "#ifndef ASC_FIRMWARE_CONFIG_H_\n#define ASC_FIRMWARE_CONFIG_H_\n\n"
        f"#define ASC_OP_COUNT {len(calls)}\n"
        f"#define ASC_ARENA_BYTES {arena_bytes}\n"
        f"#define ASC_ADD_OPS(r) do {{ {adds} }} while (0)\n\n"
        "#endif  // ASC_FIRMWARE_CONFIG_H_\n"
    )


def linker_script(cpu):
    template = resources.files("asc_keras.mcu").joinpath("firmware/link.ld.in").read_text()
    values = {
        "CODE_ORIGIN": hex(cpu.code[0]),
        "CODE_LENGTH": hex(cpu.code[1]),
        "CONST_ORIGIN": hex(cpu.const[0]),
        "CONST_LENGTH": hex(cpu.const[1]),
        "RAM_ORIGIN": hex(cpu.ram[0]),
        "RAM_LENGTH": hex(cpu.ram[1]),
    }
    return re.sub(r"@(\w+)@", lambda m: values[m.group(1)], template)


@dataclasses.dataclass
class Library:
    """A built TFLite Micro library and the flags its objects were compiled with."""

    path: Path
    cxx: str
    cc: str
    cxxflags: list
    ccflags: list
    includes: list


def _make(tflm, cpu, kernels, *targets, jobs=None, capture=True):
    toolchain = Path(find_tool("arm-none-eabi-g++")).parent
    command = [
        "make",
        "-C",
        str(tflm),
        "-f",
        str(MAKE_DIR / "Makefile"),
        "TARGET=cortex_m_generic",
        f"TARGET_ARCH={CPUS[cpu].arch}",
        f"TARGET_TOOLCHAIN_ROOT={toolchain}/",
        f"-j{jobs or os.cpu_count() or 1}",
    ]
    if KERNELS[kernels]:
        command.append(f"OPTIMIZED_KERNEL_DIR={KERNELS[kernels]}")
    # TFLite Micro's Makefile runs `python3` scripts that import numpy and PIL: this
    # interpreter's environment has both.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    done = subprocess.run(
        [*command, *targets],
        capture_output=capture,
        text=True,
        check=False,
        env={**os.environ, "PATH": path},
    )
    if done.returncode:
        output = (done.stdout or "")[-2000:] + (done.stderr or "")[-2000:]
        raise FirmwareError(f"building TFLite Micro ({cpu}, {kernels}) failed:\n{output}")
    return done.stdout or ""


def build_library(tflm, cpu, kernels, jobs=None, log=print):
    """TFLite Micro's library for `cpu` and `kernels`, built once per checkout (make's own
    incremental build keeps it; later calls only read the flags)."""
    tflm = find_tflm(tflm)
    variables = ["MICROLITE_LIB_PATH", "CXX", "CC", "CXXFLAGS", "CCFLAGS", "INCLUDES"]
    variables += ["CORE_OPTIMIZATION_LEVEL"]
    printed = _make(tflm, cpu, kernels, *(f"print-{name}" for name in variables), jobs=1)
    values = dict(re.findall(r"^(\w+)=(.*)$", printed, re.MULTILINE))
    missing = [name for name in variables if name not in values]
    if missing:
        raise FirmwareError(f"TFLite Micro's Makefile did not print {missing}")
    library = tflm / values["MICROLITE_LIB_PATH"]
    if not library.is_file():
        log(f"building TFLite Micro for {cpu} with {kernels} kernels (once; a few minutes)")
    _make(tflm, cpu, kernels, "microlite", jobs=jobs)

    def flags(name):
        # As make would pass them to the shell: -DX=\\"ARMCM4.h\\" becomes -DX="ARMCM4.h".
        return [f for f in shlex.split(values[name]) if not f.startswith("-MD")]

    optimization = values["CORE_OPTIMIZATION_LEVEL"].split()
    return Library(
        library,
        values["CXX"],
        values["CC"],
        flags("CXXFLAGS") + optimization,
        flags("CCFLAGS") + optimization,
        [
            f if not f.startswith("-I") or Path(f[2:]).is_absolute() else f"-I{tflm / f[2:]}"
            for f in shlex.split(values["INCLUDES"])
        ],
    )


def _run(command, what, cwd=None):
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=cwd)
    if done.returncode:
        raise FirmwareError(f"{what} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return done.stdout


def build_firmware(library, cpu, model_bytes, inputs, directory):
    """Compiles and links the firmware for `model_bytes` and `inputs`: directory/firmware.elf."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_c_array(model_bytes, directory / "model", "asc_model")
    header, source = c_inputs(inputs)
    atomic_write_text(directory / "inputs.h", header)
    atomic_write_text(directory / "inputs.cc", source)
    atomic_write_text(directory / "firmware_config.h", firmware_config(resolver_calls(model_bytes)))
    atomic_write_text(directory / "link.ld", linker_script(CPUS[cpu]))
    firmware = Path(str(resources.files("asc_keras.mcu").joinpath("firmware")))
    c, cxx = (library.cc, library.ccflags), (library.cxx, library.cxxflags)
    sources = [  # (source, (compiler, flags)): the fixed parts, then the generated ones
        (firmware / "main.cc", cxx),
        (firmware / "startup.c", c),
        (directory / "model.cc", cxx),
        (directory / "inputs.cc", cxx),
    ]
    objects = []
    for path, (compiler, flags) in sources:
        target = directory / f"{path.name}.o"
        command = [compiler, *flags, f"-I{directory}", *library.includes, "-c", str(path)]
        _run([*command, "-o", str(target)], f"compiling {path.name}")
        objects.append(str(target))
    elf = directory / "firmware.elf"
    flags = [
        f for f in library.cxxflags if f.startswith(("-mcpu", "-mfpu", "-mfloat-abi", "-mthumb"))
    ]
    _run(
        [
            library.cxx,
            *flags,
            "-nostartfiles",
            "--specs=nano.specs",
            "--specs=nosys.specs",
            f"-T{directory / 'link.ld'}",
            "-Wl,--gc-sections",
            f"-Wl,-Map={directory / 'firmware.map'}",
            *objects,
            str(library.path),
            "-lm",
            "-o",
            str(elf),
        ],
        "linking the firmware",
    )
    return elf


def image_sizes(elf):
    """Flash (text + rodata + data's initial values) and static RAM (data + bss) of the image,
    in bytes, from the ELF's section headers."""
    sections = {}
    for line in _run([find_tool("arm-none-eabi-size"), "-A", str(elf)], "size").splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit():
            sections[parts[0]] = int(parts[1])
    flash = sum(sections.get(name, 0) for name in (".text", ".rodata", ".ARM.exidx", ".data"))
    ram = sections.get(".data", 0) + sections.get(".bss", 0)
    return {"flash_bytes": flash, "static_ram_bytes": ram, "sections": sections}


@dataclasses.dataclass
class Emulation:
    """What the firmware reported from QEMU."""

    instructions_per_tick: float
    arena_bytes: int
    outputs: list  # raw output tensor bytes per input
    instructions: list  # per input, the whole Invoke
    ops: list  # (name, instructions) of every op, for the first input


def parse_output(text):
    """Reads the firmware's report (see firmware/main.cc); an ERROR line, or a report without
    DONE, is a `FirmwareError` carrying the output."""
    errors = re.findall(r"^ERROR (.*)$", text, re.MULTILINE)
    if errors or not re.search(r"^DONE$", text, re.MULTILINE):
        reason = "; ".join(errors) or "the firmware stopped before DONE"
        raise FirmwareError(f"emulated run failed: {reason}\n{text[-2000:]}")
    calibration = re.search(r"^CALIBRATION (\d+) (\d+)$", text, re.MULTILINE)
    instructions, ticks = int(calibration[1]), int(calibration[2])
    if ticks == 0:
        raise FirmwareError("SysTick did not count during calibration")
    per_tick = instructions / ticks
    arena = int(re.search(r"^ARENA (\d+)$", text, re.MULTILINE)[1])
    invokes = {int(i): int(t) for i, t in re.findall(r"^INPUT (\d+) (\d+)$", text, re.MULTILINE)}
    outputs = {
        int(i): bytes.fromhex(h)
        for i, h in re.findall(r"^OUTPUT (\d+) ([0-9a-f]*)$", text, re.MULTILINE)
    }
    if sorted(invokes) != list(range(len(invokes))) or sorted(outputs) != sorted(invokes):
        raise FirmwareError(f"the firmware's report is incomplete:\n{text[-2000:]}")
    ops = [
        (name, int(t) * per_tick)
        for _, name, t in re.findall(r"^OP (\d+) (\S+) (\d+)$", text, re.MULTILINE)
    ]
    return Emulation(
        per_tick,
        arena,
        [outputs[i] for i in range(len(outputs))],
        [invokes[i] * per_tick for i in range(len(invokes))],
        ops,
    )


def emulate(elf, cpu, timeout=1800):
    """Runs the firmware in QEMU (instruction-counting mode) and parses its report."""
    command = [
        find_tool("qemu-system-arm"),
        "-M",
        CPUS[cpu].machine,
        "-nographic",
        "-monitor",
        "none",
        "-serial",
        "none",
        "-semihosting-config",
        "enable=on,target=native",
        "-icount",
        "shift=0",
        "-kernel",
        str(elf),
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as error:
        raise FirmwareError(
            f"QEMU did not finish within {timeout} s: {' '.join(command)}"
        ) from error
    emulation = parse_output(done.stdout + done.stderr)
    if done.returncode:
        raise FirmwareError(f"QEMU exited with {done.returncode}:\n{done.stderr[-2000:]}")
    return emulation
