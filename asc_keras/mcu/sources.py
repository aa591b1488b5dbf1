"""Where the microcontroller build's parts come from: the Arm toolchain, QEMU and a TFLite Micro
checkout with its pinned third-party downloads.

Nothing here downloads at run time. `assemble` fills a TFLite Micro checkout's
`tensorflow/lite/micro/tools/make/downloads/` from local git repositories (clones, or the
bare snapshots that a `fetch` of each public repository leaves), at the commits that the
checkout's own download scripts pin, and applies TFLite Micro's patches; only where no local
copy exists and `network=True` does it `git clone` from GitHub.
"""

import dataclasses
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from asc_keras.errors import UserError

TFLM_ENV = "ASC_TFLM_DIR"
MAKE_DIR = Path("tensorflow/lite/micro/tools/make")
# The TFLite Micro commit this project's firmware was built and checked with.
TFLM_COMMIT = "90b983c2b3f1480642e040bbd2ddb37b998f3424"
TOOLS = {
    "arm-none-eabi-g++": "apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi "
    "libstdc++-arm-none-eabi-newlib",
    "qemu-system-arm": "apt-get install qemu-system-arm",
}


class SourcesError(UserError, RuntimeError):
    """A toolchain, emulator or source tree the microcontroller build needs is missing."""


@dataclasses.dataclass(frozen=True)
class Download:
    """One third-party folder of TFLite Micro's `downloads/`, as its scripts pin it."""

    repository: str  # owner/name on GitHub
    ref: str  # commit or tag
    folder: str  # under downloads/
    patch: str | None = None  # TFLite Micro's patch for it, relative to the checkout
    remove_build_files: bool = False


# The scripts that pin each download, and where each repository goes; the refs are read from
# the scripts of the checkout at hand, so a newer TFLite Micro brings its own pins.
PINNING_FILES = (
    "ext_libs/cmsis_download.sh",
    "ext_libs/cmsis_nn_download.sh",
    "third_party_downloads.inc",
)
LAYOUT = {
    "ARM-software/CMSIS_6": ("cmsis", None, False),
    "ARM-software/Cortex_DFP": ("cmsis/Cortex_DFP", None, False),
    "ARM-software/CMSIS-NN": ("cmsis_nn", None, False),
    "google/gemmlowp": ("gemmlowp", None, False),
    "google/ruy": ("ruy", None, False),
    "google/flatbuffers": ("flatbuffers", str(MAKE_DIR / "flatbuffers.patch"), True),
    "mborgerding/kissfft": ("kissfft", "third_party/kissfft/kissfft.patch", False),
}
ARCHIVE_URL = re.compile(
    r"github\.com/(?P<repository>[\w.-]+/[\w.-]+)/archive/(?:refs/tags/)?(?P<ref>[\w.-]+)\.zip"
)


def find_tool(name):
    """The path of `name` on PATH, or a `SourcesError` saying what to install."""
    path = shutil.which(name)
    if path is None:
        install = TOOLS.get(name, TOOLS["arm-none-eabi-g++"])
        raise SourcesError(f"{name} not found on PATH; install it: {install}")
    return path


def require_emulator(tflm=None):
    """The TFLite Micro checkout (see `find_tflm`) once the Arm toolchain and QEMU are found;
    else a `SourcesError` saying what to install or pass."""
    find_tool("arm-none-eabi-g++")
    find_tool("qemu-system-arm")
    return find_tflm(tflm)


def find_tflm(tflm=None):
    """The TFLite Micro checkout given (`--tflm`) or named by $ASC_TFLM_DIR, checked to hold
    the sources and assembled downloads."""
    given = tflm or os.environ.get(TFLM_ENV)
    if not given:
        raise SourcesError(
            f"no TFLite Micro sources: pass --tflm DIR or set {TFLM_ENV}; "
            f"python tools/mcu_sources.py DIR assembles a checkout (see its --help)"
        )
    root = Path(given).expanduser()
    if not (root / MAKE_DIR / "Makefile").is_file():
        raise SourcesError(
            f"{root} is not a TFLite Micro checkout (no {MAKE_DIR}/Makefile); "
            f"python tools/mcu_sources.py {root} makes one"
        )
    missing = [
        d.folder for d in pinned_downloads(root) if not (downloads(root) / d.folder).is_dir()
    ]
    if missing:
        raise SourcesError(
            f"{root}: the third-party folders {missing} are missing under "
            f"{downloads(root)}; python tools/mcu_sources.py {root} assembles them"
        )
    return root


def downloads(root):
    return Path(root) / MAKE_DIR / "downloads"


def _assignments(text):
    """Shell / make variable assignments of a pinning file, `${NAME}` expanded."""
    values = {}
    for name, value in re.findall(r'^\s*(\w+)\s*:?=\s*"?([^"\s]+)"?\s*$', text, re.MULTILINE):
        values[name] = re.sub(r"\$\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), value)
    return values


def pinned_downloads(root):
    """The `Download`s that the checkout's scripts pin, in `LAYOUT`'s order."""
    pins = {}
    for name in PINNING_FILES:
        path = Path(root) / MAKE_DIR / name
        if not path.is_file():
            raise SourcesError(f"{path} is missing: not a TFLite Micro checkout this tool knows")
        for value in _assignments(path.read_text()).values():
            match = ARCHIVE_URL.search(value)
            if match and match["repository"] in LAYOUT:
                pins[match["repository"]] = match["ref"]
    missing = [r for r in LAYOUT if r not in pins]
    if missing:
        raise SourcesError(f"{root}: found no pinned version of {missing} in {PINNING_FILES}")
    return [Download(repository, pins[repository], *LAYOUT[repository]) for repository in LAYOUT]


def local_repository(repository, search):
    """A local git repository of `repository` (owner/name) under one of the folders `search`:
    `owner+name/repo` (a fetched snapshot), `owner+name`, `name.git` or `name`."""
    owner, name = repository.split("/")
    for folder in search:
        for candidate in (f"{owner}+{name}/repo", f"{owner}+{name}", f"{name}.git", name):
            path = Path(folder) / candidate
            if path.is_dir() and _git(path, "rev-parse", "--git-dir", check=False) is not None:
                return path
    return None


def _git(repository, *args, check=True):
    done = subprocess.run(
        ["git", "-C", str(repository), *args], capture_output=True, text=True, check=False
    )
    if done.returncode:
        if check:
            raise SourcesError(f"git {' '.join(args)} in {repository}: {done.stderr.strip()}")
        return None
    return done.stdout.strip()


def _extract(repository, ref, destination):
    """The tree of `ref` in the local `repository`, written to the new folder `destination`."""
    destination.mkdir(parents=True)
    archive = subprocess.Popen(
        ["git", "-C", str(repository), "archive", "--format=tar", f"{ref}^{{tree}}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    untar = subprocess.run(
        ["tar", "-x", "-C", str(destination)], stdin=archive.stdout, capture_output=True
    )
    archive.stdout.close()
    error = archive.stderr.read().decode()
    if archive.wait() or untar.returncode:
        raise SourcesError(
            f"cannot extract {ref} of {repository}: {error.strip() or untar.stderr.decode()}"
        )


def _fetch(download, search, network, scratch):
    """A local repository holding `download.ref`: found under `search`, else cloned."""
    local = local_repository(download.repository, search)
    if local is not None:
        if _git(local, "rev-parse", "--verify", "-q", f"{download.ref}^{{commit}}", check=False):
            return local
        raise SourcesError(
            f"{local} does not hold {download.ref} of {download.repository}, which "
            f"TFLite Micro pins; update that copy"
        )
    if not network:
        raise SourcesError(
            f"no local copy of {download.repository} under {[str(s) for s in search]} "
            f"(looked for owner+name/repo, name.git, name); clone it there, or pass --network"
        )
    clone = Path(scratch) / download.repository.replace("/", "+")
    url = f"https://github.com/{download.repository}.git"
    done = subprocess.run(
        ["git", "clone", "-q", "--filter=blob:none", url, str(clone)], check=False
    )
    if done.returncode:
        raise SourcesError(f"git clone {url} failed")
    return clone


def assemble(root, search=(), network=False, commit=TFLM_COMMIT, log=print):
    """Makes `root` a TFLite Micro checkout (from a local tflite-micro repository at
    `commit`, when `root` has none) with every pinned download in place. Each folder is
    written under a temporary name and renamed when complete, so an interrupted run leaves
    nothing half-made; folders already there are kept. Returns the list of folders made."""
    root = Path(root)
    made = []
    with tempfile.TemporaryDirectory(prefix="mcu-sources-") as scratch:
        if not (root / MAKE_DIR / "Makefile").is_file():
            source = _fetch(
                Download("tensorflow/tflite-micro", commit, "."), search, network, scratch
            )
            partial = root.with_name(root.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            _extract(source, commit, partial)
            partial.rename(root)
            made.append(str(root))
            log(f"TFLite Micro {commit[:12]} -> {root}")
        target = downloads(root)
        target.mkdir(exist_ok=True)
        for download in pinned_downloads(root):
            folder = target / download.folder
            if folder.is_dir():
                continue
            source = _fetch(download, search, network, scratch)
            partial = folder.with_name(folder.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            _extract(source, download.ref, partial)
            if download.remove_build_files:
                for build in [*partial.rglob("BUILD"), *partial.rglob("BUILD.bazel")]:
                    build.unlink()
            if download.patch:
                _patch(partial, root / download.patch)
            partial.rename(folder)
            made.append(str(folder))
            log(f"{download.repository} {download.ref[:12]} -> {folder}")
        # TFLite Micro's make clones pigweed (only its own unit tests use it) unless the folder
        # exists; an empty one keeps the firmware build off the network.
        (target / "pigweed").mkdir(exist_ok=True)
    return made


def _patch(folder, patch):
    done = subprocess.run(
        ["patch", "-p1", "-s", "-d", str(folder), "-i", str(patch)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise SourcesError(f"applying {patch} to {folder} failed: {done.stdout}{done.stderr}")
