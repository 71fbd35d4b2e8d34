"""The domains file: strict parsing with file:line errors, the built-in default, per-domain settings and ids."""

from __future__ import annotations

import datetime as dt
import re
import textwrap
from pathlib import Path

import pytest

from workers import domains as dm
from workers.settings import WorkerSettings

GOOD = """\
default = "coast"

[[domain]]
id = "national"
feed_dir = "feeds/national"
checkpoint = "/srv/ckpt/national.pt"
source_policy = "best"
queue = "gpu"

[[domain]]
id = "coast"
grid = "96x160"
queue = "cpu"
extrapolation_queue = "cpu2"
timestep_minutes = 5
latency_offset_minutes = 1
seed = 7
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "domains.toml"
    path.write_text(textwrap.dedent(text))
    return path


def _settings(tmp_path: Path, **extra: object) -> WorkerSettings:
    return WorkerSettings(data_dir=tmp_path / "var", **extra)


def test_a_good_file_gives_its_domains_in_order(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD)
    loaded = dm.load_domains(path, settings=_settings(tmp_path))
    assert [d.id for d in loaded] == ["national", "coast"]
    national, coast = loaded.items
    assert national.feed_dir == tmp_path / "feeds" / "national"  # relative to the file
    assert national.checkpoint == Path("/srv/ckpt/national.pt")
    assert national.source_policy == "best" and national.grid is None and not national.default
    assert coast.grid == (96, 160) and coast.grid_text == "96x160" and coast.default
    assert (coast.queue, coast.extrapolation_queue, coast.timestep_minutes, coast.seed) == ("cpu", "cpu2", 5, 7)
    assert loaded.default is coast and loaded.get(None) is coast and loaded.get("national") is national
    assert loaded.get("nowhere") is None


def test_without_a_file_there_is_one_default_domain_on_the_settings_feed(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    only = dm.domains_for(settings)
    assert [d.id for d in only] == ["default"] and dm.feed_dir_of(settings, only.default) == tmp_path / "var" / "feed"
    slot = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
    assert dm.nowcast_job_id(only.default, slot) == "nowcast-20260301T1200Z"  # today's ids
    assert dm.nowcast_job_id(only.default, slot, "extrapolation") == "nowcast-20260301T1200Z-extrapolation"
    assert dm.domain_settings(settings, only.default).feed_dir == settings.feed_dir


def test_domain_settings_and_ids_of_a_named_domain(tmp_path: Path) -> None:
    settings = _settings(tmp_path, domains=_write(tmp_path, GOOD))
    loaded = dm.domains_for(settings)
    national = loaded.get("national")
    coast = loaded.get("coast")
    assert national is not None and coast is not None
    own = dm.domain_settings(settings, national)
    assert own.feed_dir == tmp_path / "feeds" / "national" and own.source_policy == "best"
    assert own.checkpoint == Path("/srv/ckpt/national.pt") and own.timestep_minutes == settings.timestep_minutes
    synthetic = dm.domain_settings(settings, coast)
    # The default domain keeps the settings' feed directory; a synthetic non-default one lives under feeds/.
    assert synthetic.feed_dir == settings.feed_dir and synthetic.timestep_minutes == 5
    assert dm.feed_dir_of(settings, dm.Domain(id="harbour", grid=(8, 8))) == tmp_path / "var" / "feeds" / "harbour"
    slot = dt.datetime(2026, 3, 1, 12, 6, tzinfo=dt.UTC)
    job = dm.nowcast_job_id(national, slot, "extrapolation")
    assert job == "nowcast-national-20260301T1206Z-extrapolation"
    assert dm.domain_of_job(job, loaded) is national
    assert dm.domain_of_job("nowcast-20260301T1206Z", loaded) is coast
    assert dm.domain_of_job("nowcast-elsewhere-20260301T1206Z", loaded) is None
    assert dm.domain_of_job("forecast-abc", loaded) is None
    assert dm.slot_part(job) == "20260301T1206Z" and dm.slot_part("nowcast-20260301T1206Z") == "20260301T1206Z"


@pytest.mark.parametrize(("text", "line", "words"), [
    ('[[domain]]\nid = "a"\ngrid = "8x8"\n\n[[domain]]\nid = "b"\ngrid = "8x8"\n[[domain]]\nid = "a"\ngrid = "9x9"\n',
     9, "duplicate domain id 'a' (first at line 2)"),
    ('[[domain]]\nid = "a"\ngrid = "8x8"\ncolour = "red"\n', 4, "unknown key 'colour'"),
    ('[[domain]]\nid = "a"\n# a comment\ngrid = "0x64"\n', 4, "grid '0x64' must be HxW"),
    ('[[domain]]\nid = "a"\ngrid = "64"\n', 3, "grid '64' must be HxW"),
    ('region = "x"\n[[domain]]\nid = "a"\n', 1, "unknown key 'region'"),
    ('[[domain]]\ngrid = "8x8"\n', 1, "without an id"),
    ('[[domain]]\nid = "Bad-Id"\n', 2, "lower-case"),
    ('[[domain]]\nid = "a"\ntimestep_minutes = 7\n', 3, "must divide 60"),
    ('[[domain]]\nid = "a"\nsource_policy = "luck"\n', 3, "must be one of model"),
    ('[[domain]]\nid = "a"\nqueue = 3\n', 3, "queue must be a string"),
    ('[[domain]]\nid = "a"\nfeed_dir = "x"\ngrid = "8x8"\n', 4, "both feed_dir and grid"),
    ('default = "z"\n[[domain]]\nid = "a"\n', 1, "default 'z' is not the id"),
    ('[[domain]]\nid = "a"\nlatency_offset_minutes = 6\n', 3, "must be shorter than timestep_minutes 6"),
    ('title = "no domains"\n', 1, "unknown key 'title'"),
    ('default = "a"\n', 1, "no [[domain]] table"),
])
def test_bad_files_are_refused_naming_the_line(tmp_path: Path, text: str, line: int, words: str) -> None:
    path = tmp_path / "domains.toml"
    path.write_text(text)
    with pytest.raises(dm.DomainFileError) as caught:
        dm.load_domains(path, settings=_settings(tmp_path))
    message = str(caught.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert words in message


def test_toml_syntax_errors_and_unreadable_files_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "domains.toml"
    path.write_text('[[domain]]\nid = "a\n')
    with pytest.raises(dm.DomainFileError, match=r"domains file .*domains.toml: not valid TOML: .*line 2"):
        dm.load_domains(path, settings=_settings(tmp_path))
    with pytest.raises(dm.DomainFileError, match=r"domains file .*absent.toml: cannot read it"):
        dm.domains_for(_settings(tmp_path, domains=tmp_path / "absent.toml"))


def test_the_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    path = _write(tmp_path, '[[domain]]\nid = "a"\ngrid = "8x8"\n')
    settings = _settings(tmp_path, domains=path)
    assert [d.id for d in dm.domains_for(settings)] == ["a"]
    path.write_text('[[domain]]\nid = "a"\ngrid = "8x8"\n[[domain]]\nid = "b"\ngrid = "8x16"\n')
    import os
    os.utime(path, ns=(1, 10**18))
    assert [d.id for d in dm.domains_for(settings)] == ["a", "b"]


LCC = "+proj=lcc +lat_0=54 +lon_0=-3 +lat_1=50 +lat_2=58 +datum=WGS84"
# Two synthetic domains: one on the feed's own projection, one on LCC (the projection tests' file).
SITE_AND_ISLANDS = f"""\
        [[domain]]
        id = "site"
        grid = "24x40"

        [[domain]]
        id = "islands"
        grid = "40x24"
        projection = "{LCC}"
        """


def test_a_projection_key_becomes_the_synthetic_feeds_grid_mapping(tmp_path: Path) -> None:
    import xarray as xr
    from pyproj import CRS

    from model.io.netcdf import read_scans
    from service.gridmap import grid_mapping_of
    from stack.feed import FrameSource

    path = _write(tmp_path, SITE_AND_ISLANDS + """
        [[domain]]
        id = "europe"
        grid = "32x32"
        projection = "EPSG:3035"
        """)
    site, islands, europe = dm.load_domains(path, settings=_settings(tmp_path)).items
    assert (site.projection, islands.projection, europe.projection) == (None, LCC, "EPSG:3035")
    at = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
    written = {d.id: FrameSource(d.grid, seed=1, first_slot=at, projection=d.projection).write(tmp_path / d.id, [at])
               for d in (site, islands, europe)}
    proj4 = {}
    for domain_id, files in written.items():
        with xr.open_dataset(files[0], engine="netcdf4") as ds:
            proj4[domain_id] = grid_mapping_of(ds, ds["reflectivity"])["proj4"]
    assert "+proj=aeqd" in proj4["site"] and "+proj=lcc" in proj4["islands"] and "+proj=laea" in proj4["europe"]
    assert CRS.from_proj4(proj4["islands"]).equals(CRS.from_user_input(LCC), ignore_axis_order=True)
    # The grid sits on the projection's natural origin: the centre of EPSG:3035 is 52 N 10 E.
    europe_scans = read_scans(written["europe"])
    assert europe_scans.x.mean() == pytest.approx(4_321_000.0) and europe_scans.y.mean() == pytest.approx(3_210_000.0)
    assert read_scans(written["islands"]).dbz.shape == (1, 40, 24)


@pytest.mark.parametrize(("value", "reason"), [
    ("EPSG:4326", "must be a projected CRS in metres, not Geographic 2D CRS"),
    ("+proj=nonsense", "is not a PROJ string or EPSG code pyproj knows"),
    ("", "is not a PROJ string or EPSG code pyproj knows"),
])
def test_a_bad_projection_is_refused_with_its_line(tmp_path: Path, value: str, reason: str) -> None:
    path = _write(tmp_path, f"""\
        [[domain]]
        id = "a"
        grid = "16x16"
        projection = "{value}"
        """)
    with pytest.raises(dm.DomainFileError, match=rf"domains.toml:4: projection '{re.escape(value)}' {reason}"):
        dm.load_domains(path, settings=_settings(tmp_path))


def test_a_real_feed_takes_no_projection(tmp_path: Path) -> None:
    path = _write(tmp_path, f"""\
        [[domain]]
        id = "a"
        feed_dir = "/srv/a"
        projection = "{LCC}"
        """)
    with pytest.raises(dm.DomainFileError, match=r"domains.toml:4: domain 'a' has both feed_dir and projection"):
        dm.load_domains(path, settings=_settings(tmp_path))


def test_nowcast_up_hands_a_domains_projection_to_its_feed_child(tmp_path: Path) -> None:
    from stack import launcher

    path = _write(tmp_path, SITE_AND_ISLANDS)
    options = launcher.StackOptions(data_dir=tmp_path / "var", speed=60.0, domains=path, base_env={}, python="py",
                                    clock_origin=(1.0e9, dt.datetime(2026, 3, 1, tzinfo=dt.UTC)))
    env = launcher.child_env(options, redis_url="redis://x", api_keys="k")
    argv = {spec.name: spec.argv for spec in launcher.feed_specs(options, env)}
    assert "--projection" not in argv["feed"]  # the site's grid mapping, as before
    assert argv["feed-islands"][argv["feed-islands"].index("--projection") + 1] == LCC
