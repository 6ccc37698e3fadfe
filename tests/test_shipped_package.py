"""The product ships no test doubles: they live in tests/doubles/ and only the test setup installs them."""

import pkgutil
import subprocess
import sys
from pathlib import Path

import pada
from pada.llm import client as client_module

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ["pada", "pages", "app.py", "scripts", "benchmarks", "configs"]
DOUBLE_NAMES = ("scripted", "slm.testing", "slm/testing", "doubles.", "tests/doubles", "build_tiny_model", "stand_in",
                "stand-in")


def shipped_files():
    for name in SHIPPED:
        path = REPO / name
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        yield from (f for f in files if "__pycache__" not in f.parts)


def test_no_module_of_the_package_is_a_test_double():
    names = [info.name for info in pkgutil.walk_packages(pada.__path__, "pada.")]
    assert "pada.llm.client" in names
    assert not [n for n in names if "scripted" in n or n.endswith(".testing") or "doubles" in n]


def test_no_shipped_file_names_a_test_double():
    offenders = []
    for path in shipped_files():
        text = path.read_text(errors="ignore")
        offenders += [f"{path.relative_to(REPO)}: {word}" for word in DOUBLE_NAMES if word in text]
    assert offenders == []


def test_prompts_carry_no_notes_for_test_parsers():
    for path in (REPO / "pada/llm/prompts").glob("*.jinja2"):
        text = path.read_text()
        assert "parsed by" not in text and "keep them" not in text, path.name


def test_the_provider_registry_has_no_built_in_stand_in():
    assert client_module._OWN_PROVIDERS == {}  # local/ models are a server the client reaches like any other
    assert "scripted" not in client_module._JSON_SCHEMA_PROVIDERS


def test_a_fresh_process_registers_nothing_for_a_scripted_model():
    code = (
        "from pada.llm.client import LLMClient, LLMConfig, _litellm, registered_providers\n"
        "client = LLMClient(LLMConfig(model='scripted/x', max_retries=0))\n"
        "result = client.complete_text([{'role': 'user', 'content': 'hi'}], stage='x')\n"
        "print(result.ok, _litellm().custom_provider_map, registered_providers())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False", "[]", "{}"]
