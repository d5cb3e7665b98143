"""devices: "auto" precision is bf16 exactly where the hardware multiplies bf16 natively."""

import math
import os

import pytest
import torch
from single_thread import one_torch_thread  # noqa: F401 (autouse)
from test_models import write_toy_shards
from test_trainer import _cfg

from relbridge.models import trainer
from relbridge.runtime import devices


@pytest.fixture
def fresh_probe():
    devices.cpu_has_native_bf16.cache_clear()
    yield
    devices.cpu_has_native_bf16.cache_clear()


def test_cpuinfo_flags_are_read_from_the_first_processor(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu\n"
    )
    assert devices._cpuinfo_flags(str(info)) == {"fpu", "avx2", "avx512_bf16"}
    assert devices._cpuinfo_flags(str(tmp_path / "missing")) == set()


@pytest.mark.parametrize(
    ("caps", "expected"),
    [
        ({"avx2": True, "avx512_bf16": False, "amx_bf16": False}, False),
        ({"avx2": True, "avx512_bf16": True, "amx_bf16": False}, True),
        ({"avx2": True, "avx512_bf16": False, "amx_bf16": True}, True),
    ],
)
def test_cpu_bf16_follows_torch_capabilities(monkeypatch, fresh_probe, caps, expected):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: caps, raising=False)
    assert devices.cpu_has_native_bf16() is expected


def test_cpu_bf16_falls_back_to_cpu_flags(monkeypatch, fresh_probe):
    def broken():
        raise RuntimeError("probe changed")

    monkeypatch.setattr(torch.cpu, "get_capabilities", broken, raising=False)
    monkeypatch.setattr(devices, "_cpuinfo_flags", lambda path=None: {"avx2", "amx_bf16"})
    assert devices.cpu_has_native_bf16() is True


def test_auto_dtype_and_device(monkeypatch):
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)
    assert devices.resolve_dtype("auto", "cpu") is torch.float32
    assert devices.resolve_dtype("auto", "cuda:1") is torch.bfloat16
    assert devices.resolve_dtype("float16", "cpu") is torch.float16
    assert not devices.native_bf16("cpu") and devices.native_bf16("cuda")
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)
    assert devices.resolve_dtype("auto", "cpu") is torch.bfloat16
    assert devices.native_bf16("cpu") and not devices.native_bf16("mps")
    with pytest.raises(ValueError, match="dtype"):
        devices.resolve_dtype("int8", "cpu")
    assert devices.resolve_device("cpu") == "cpu"
    assert devices.resolve_device("auto") in ("cpu", "cuda")


@pytest.mark.parametrize("native", [False, True])
def test_trainer_autocasts_on_cpu_only_with_native_bf16(
    monkeypatch, tiny_encoder, tmp_path, native
):
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: native)
    seen = []
    inner = trainer._micro_batch_loss

    def spy(*args, **kwargs):
        seen.append(torch.is_autocast_enabled("cpu"))
        return inner(*args, **kwargs)

    monkeypatch.setattr(trainer, "_micro_batch_loss", spy)
    shards = write_toy_shards(tmp_path / "shards")
    stats = trainer.train(_cfg(tiny_encoder, shards, tmp_path / "run", epochs=1, device="cpu"))
    assert stats["completed"] and stats["bf16_autocast"] is native
    assert seen and set(seen) == {native}
    assert stats["final_loss"] is not None and math.isfinite(stats["final_loss"])


def test_native_caches_are_bounded_unless_the_user_chose_a_size(monkeypatch):
    from relbridge.runtime.devices import NATIVE_CACHE_ENTRIES, bound_native_caches

    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", raising=False)
    monkeypatch.setenv("LRU_CACHE_CAPACITY", "300")
    bound_native_caches()
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == str(NATIVE_CACHE_ENTRIES)
    assert os.environ["LRU_CACHE_CAPACITY"] == "300"


def test_the_cli_bounds_native_caches_before_any_command_runs(monkeypatch):
    from relbridge.cli.main import main

    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", raising=False)
    monkeypatch.delenv("LRU_CACHE_CAPACITY", raising=False)
    with pytest.raises(SystemExit):
        main(["--help"])
    assert os.environ["LRU_CACHE_CAPACITY"] == os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"]


def test_release_free_heap_returns_freed_pages_on_glibc():
    """Freed C-heap pages go back to the OS (glibc), and the call is a safe no-op elsewhere."""
    import platform

    blocks = [bytearray(64 * 1024) for _ in range(2000)]  # 128 MB below the mmap threshold
    del blocks[:-1]  # all but the top block: glibc keeps the freed space
    released = devices.release_free_heap()
    if platform.libc_ver()[0] == "glibc":
        assert released is True
    else:
        assert released is False
