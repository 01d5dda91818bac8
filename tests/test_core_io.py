"""uae_data.core: the one atomic write, the JSON-lines logs, and the one device helper."""
from __future__ import annotations

import pytest
import torch

from uae_data.core.device import default_device, resolve_device
from uae_data.core.errors import ConfigError
from uae_data.core.io import (atomic_write, atomic_write_text, read_jsonl, truncate_jsonl,
                              write_jsonl)

pytestmark = pytest.mark.unit


def test_atomic_write_keeps_the_old_file_and_leaves_no_temp_file_when_fill_raises(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("old: 1\n")

    def fill(f):
        f.write("new: half")
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError, match="crash mid-write"):
        atomic_write(path, fill)
    assert path.read_text() == "old: 1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]


def test_atomic_write_text_and_bytes_replace_the_file_and_create_its_folder(tmp_path):
    text = atomic_write_text(tmp_path / "a" / "sizes.json", '{"x": 1}\n')
    assert text.read_text() == '{"x": 1}\n'
    atomic_write_text(text, "second\n")
    assert text.read_text() == "second\n"
    data = atomic_write(tmp_path / "b.bin", lambda f: f.write(b"\x00\xff"), binary=True)
    assert data.read_bytes() == b"\x00\xff"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b.bin", "sizes.json"]


def test_jsonl_write_read_round_trip_and_missing_file_is_empty(tmp_path):
    rows = [{"step": 1, "loss": 0.5}, {"step": 2, "text": "é\nx"}, {"step": 3, "nested": {"a": [1, 2]}}]
    path = write_jsonl(tmp_path / "log.jsonl", rows)
    assert read_jsonl(path) == rows
    assert len(path.read_text().splitlines()) == 3  # one row per line
    assert read_jsonl(tmp_path / "absent.jsonl") == []


def test_truncate_jsonl_drops_rows_logged_after_the_checkpoint_step(tmp_path):
    path = write_jsonl(tmp_path / "log.jsonl", [{"step": s} for s in (1, 2, 3, 4)] + [{"note": "no step"}])
    truncate_jsonl(path, 2)
    assert read_jsonl(path) == [{"step": 1}, {"step": 2}, {"note": "no step"}]
    truncate_jsonl(tmp_path / "absent.jsonl", 2)  # nothing to truncate: no file appears
    assert not (tmp_path / "absent.jsonl").exists()


def test_auto_device_is_cpu_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_device() == "cpu"
    for name in ("auto", None, ""):
        assert resolve_device(name) == torch.device("cpu")


def test_auto_device_is_cuda_when_cuda_is_visible(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_device() == "cuda"
    assert resolve_device("auto") == torch.device("cuda")


def test_auto_device_on_this_machine_follows_torch():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_explicit_cuda_without_cuda_is_a_one_line_config_error(monkeypatch, name):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError) as e:
        resolve_device(name)
    assert "\n" not in str(e.value) and name in str(e.value) and "no CUDA device" in str(e.value)


def test_device_names_and_torch_devices_pass_through():
    given = torch.device("cpu")
    assert resolve_device(given) is given
    assert resolve_device("cpu") == torch.device("cpu")
    cuda = torch.device("cuda", 3)  # a torch.device is trusted as given, even with no GPU
    assert resolve_device(cuda) is cuda
