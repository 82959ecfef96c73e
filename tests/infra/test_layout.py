"""The checkout maps its fixed folders under the one import name ``kflow`` (ADR 0002)."""

from __future__ import annotations

from pathlib import Path

import kflow

ROOT = Path(__file__).resolve().parents[2]
FRONT_DOOR = ROOT / "kflow"


def test_every_services_package_and_module_is_linked_under_kflow() -> None:
    expected = {
        p.name
        for p in (ROOT / "services").iterdir()
        if (p.is_dir() and (p / "__init__.py").exists()) or p.suffix == ".py"
    }
    linked = {p.name for p in FRONT_DOOR.iterdir() if p.is_symlink()}
    missing = expected - linked
    assert not missing, f"add `ln -s ../services/<name> kflow/<name>` for {missing}"
    for name in expected:
        assert (FRONT_DOOR / name).resolve() == (ROOT / "services" / name).resolve()


def test_services_is_not_importable_under_its_folder_name() -> None:
    assert not (ROOT / "services" / "__init__.py").exists()


def test_the_front_door_is_the_checkout_in_development() -> None:
    assert Path(kflow.__file__).resolve().parent == FRONT_DOOR
    assert (FRONT_DOOR / "py.typed").exists()
    for name in ("projections", "schemas", "examples"):
        assert (FRONT_DOOR / name).resolve() == ROOT / name
