"""``nowcast up --domains FILE``: a bad file is refused before anything starts, naming the line; one
synthetic feed child per synthetic domain; the worker consumes every domain's queues."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli import up
from model import InputError
from stack import launcher

FILE = """\
[[domain]]
id = "north"
grid = "24x40"

[[domain]]
id = "coast"
grid = "40x24"
queue = "coastq"
seed = 5

[[domain]]
id = "radar"
feed_dir = "/srv/radar/one"
extrapolation_queue = "cpu2"
"""


@pytest.mark.parametrize(("text", "line", "words"), [
    ('[[domain]]\nid = "a"\ngrid = "8x8"\n[[domain]]\nid = "a"\ngrid = "8x8"\n', 5, "duplicate domain id 'a'"),
    ('[[domain]]\nid = "a"\ngrid = "8x8"\nbogus = 1\n', 4, "unknown key 'bogus'"),
    ('[[domain]]\nid = "a"\ngrid = "0x8"\n', 3, "grid '0x8'"),
])
def test_up_refuses_a_bad_domains_file_naming_the_line(tmp_path: Path, text: str, line: int, words: str) -> None:
    path = tmp_path / "domains.toml"
    path.write_text(text)
    with pytest.raises(InputError) as error:
        up.main(["--port", str(launcher.free_port()), "--data-dir", str(tmp_path / "var"), "--domains", str(path)])
    assert str(error.value).startswith(f"{path}:{line}: ") and words in str(error.value)
    assert not (tmp_path / "var" / "run").exists()  # nothing started, no lock taken


def test_one_feed_per_synthetic_domain_and_every_queue_consumed(tmp_path: Path) -> None:
    path = tmp_path / "domains.toml"
    path.write_text(FILE)
    data_dir = tmp_path / "var"
    options = launcher.StackOptions(data_dir=data_dir, speed=60.0, domains=path, base_env={}, python="py",
                                    clock_origin=(1.0e9, launcher.dt.datetime(2026, 3, 1, tzinfo=launcher.dt.UTC)))
    env = launcher.child_env(options, redis_url="redis://x", api_keys="k")
    assert env["NOWCAST_DOMAINS"] == str(path.resolve())
    specs = {spec.name: spec for spec in launcher.stack_specs(options, env, node_name="n@h")}
    assert set(specs) == {"worker", "beat", "feed", "feed-coast", "api"}  # the real feed gets no child
    assert specs["feed"].argv[specs["feed"].argv.index("--feed-dir") + 1] == str(data_dir / "feed")
    assert specs["feed"].argv[specs["feed"].argv.index("--grid") + 1] == "24x40"
    coast = specs["feed-coast"].argv
    assert coast[coast.index("--feed-dir") + 1] == str(data_dir / "feeds" / "coast")
    assert coast[coast.index("--grid") + 1] == "40x24" and coast[coast.index("--seed") + 1] == "5"
    worker = specs["worker"].argv
    assert worker[worker.index("-Q") + 1] == "gpu,cpu,coastq,cpu2"


def test_without_a_file_the_stack_is_today_s(tmp_path: Path) -> None:
    options = launcher.StackOptions(data_dir=tmp_path, grid=(32, 48), base_env={}, python="py",
                                    clock_origin=(1.0e9, launcher.dt.datetime(2026, 3, 1, tzinfo=launcher.dt.UTC)))
    env = launcher.child_env(options, redis_url="redis://x", api_keys="k")
    assert "NOWCAST_DOMAINS" not in env
    specs = {spec.name: spec for spec in launcher.stack_specs(options, env, node_name="n@h")}
    assert set(specs) == {"worker", "beat", "feed", "api"}
    assert specs["feed"].argv[-2:] == ["--grid", "32x48"]
    assert specs["worker"].argv[specs["worker"].argv.index("-Q") + 1] == "gpu,cpu"
