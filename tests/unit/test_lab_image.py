"""The lab image recipe: mirror taken from the host, cache key, a clean provisioning script."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from recovery.lab import image
from recovery.lab.keys import ensure_ed25519, ensure_password


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_mirror_comes_from_deb822_sources_skipping_security_and_disabled(tmp_path: Path) -> None:
    write(
        tmp_path / "apt/sources.list.d/debian.sources",
        "Types: deb\nURIs: http://disabled.example/debian\nSuites: bookworm\nEnabled: no\n\n"
        "Types: deb\n# a comment\nURIs: http://security.example/debian-security\n"
        "Suites: bookworm-security\n\n"
        "Types: deb deb-src\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\n",
    )
    assert image.host_mirror(tmp_path) == "http://mirror.example/debian"


def test_mirror_comes_from_one_line_sources_list(tmp_path: Path) -> None:
    write(
        tmp_path / "apt/sources.list",
        "# deb http://commented.example/debian bookworm main\n"
        "deb http://security.example/debian-security bookworm-security main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://proxy.example:3142/debian bookworm main\n",
    )
    assert image.host_mirror(tmp_path) == "http://proxy.example:3142/debian"


def test_no_mirror_is_an_error_naming_the_files(tmp_path: Path) -> None:
    with pytest.raises(image.ImageBuildError, match="sources.list"):
        image.host_mirror(tmp_path)


def test_recipe_key_follows_the_operator_key(tmp_path: Path) -> None:
    key, password = tmp_path / "op", ensure_password(tmp_path / "pw")
    ensure_ed25519(key, "op")
    first = image.recipe_key(key, password)
    assert image.recipe_key(key, password) == first
    key.unlink()
    ensure_ed25519(key, "op")
    assert image.recipe_key(key, password) != first


def test_password_and_keys_are_private_and_stable(tmp_path: Path) -> None:
    password = ensure_password(tmp_path / "pw")
    assert password.stat().st_mode & 0o077 == 0
    assert ensure_password(password).read_text() == password.read_text()
    public = ensure_ed25519(tmp_path / "id", "who")
    assert public.startswith("ssh-ed25519 ") and public.strip().endswith(" who")
    assert (tmp_path / "id").stat().st_mode & 0o077 == 0
    assert ensure_ed25519(tmp_path / "id", "who") == public


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
@pytest.mark.parametrize("script", [image.PROVISION_SCRIPT, image.RESCUE_SCRIPT, image.ROOT_POOL_SCRIPT])
def test_image_scripts_are_shellcheck_clean(script: Path) -> None:
    done = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_recipe_key_covers_the_rescue_script_and_the_root_pool_key_the_base(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    operator, password = tmp_path / "op", ensure_password(tmp_path / "pw")
    ensure_ed25519(operator, "op")
    before = image.recipe_key(operator, password)
    rescue = tmp_path / "rescue.sh"
    rescue.write_text(image.RESCUE_SCRIPT.read_text() + "# changed\n")
    monkeypatch.setattr(image, "RESCUE_SCRIPT", rescue)
    assert image.recipe_key(operator, password) != before
    assert image.root_pool_key("a") != image.root_pool_key("b")
    assert image.root_pool_key("a") == image.root_pool_key("a")


def test_rescue_image_is_checked_against_its_recorded_sha256(tmp_path: Path) -> None:
    disk = tmp_path / "rescue.qcow2"
    disk.write_bytes(b"known good" * 1000)
    record = tmp_path / "rescue.qcow2.sha256"
    with pytest.raises(image.RescueImageRefused, match="no sha256 recorded"):
        image.check_rescue(disk, record)
    image.record_sha256(disk)
    assert record.read_text().endswith("  rescue.qcow2\n")
    image.check_rescue(disk, record)
    tampered = bytearray(disk.read_bytes())
    tampered[5] ^= 1
    disk.write_bytes(bytes(tampered))
    with pytest.raises(image.RescueImageRefused, match="changed since it was built"):
        image.check_rescue(disk, record)
    disk.unlink()
    with pytest.raises(image.RescueImageRefused, match="missing"):
        image.check_rescue(disk, record)


def test_a_failed_build_step_names_the_log_and_shows_its_tail(tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    with pytest.raises(image.ImageBuildError) as failure:
        image._run(log, ["sh", "-c", "echo fetching; echo 'E: Unable to locate package zfs-dkms'; exit 100"])
    message = str(failure.value)
    assert str(log) in message and "exit 100" in message
    assert "Unable to locate package zfs-dkms" in message
