"""pada.memory: malloc returns large freed blocks to the OS, unless the user chose their own settings."""

from pada.memory import return_freed_memory


def test_glibc_gets_a_fixed_mmap_threshold(monkeypatch):
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert return_freed_memory() is True  # this machine runs glibc


def test_a_users_own_malloc_settings_win(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert return_freed_memory() is False
