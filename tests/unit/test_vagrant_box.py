"""The lab's vagrant-libvirt box: contents, metadata and a name that follows the image recipe (no VM)."""

from __future__ import annotations

import json
import struct
import subprocess
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest

from recovery.lab import vagrant_box
from recovery.lab.image import ImagePaths
from recovery.lab.vagrant_box import BoxError, box_name, box_vagrantfile, parse_box_list, virtual_size_gib, write_box


def fake_qcow2(path: Path, size: int) -> None:
    """The first 32 bytes of a qcow2 header: magic, version, backing file, cluster bits, size."""
    path.write_bytes(b"QFI\xfb" + struct.pack(">IQII", 3, 0, 0, 16) + struct.pack(">Q", size) + b"\0" * 64)


@pytest.fixture
def image(tmp_path: Path) -> ImagePaths:
    base = tmp_path / "images" / "k"
    base.mkdir(parents=True)
    paths = ImagePaths(
        key="k", cache=tmp_path, disk=base / "base.qcow2", kernel=base / "vmlinuz", initrd=base / "initrd.img",
        operator_key=tmp_path / "operator_ed25519", root_password_file=tmp_path / "pw", log=tmp_path / "log",
        rescue_disk=base / "rescue.qcow2", rescue_sha256=base / "rescue.qcow2.sha256",
        root_pool=base / "rpool-abc123.qcow2",
    )  # fmt: skip
    fake_qcow2(paths.root_pool, 4 * 1024**3)
    paths.kernel.write_bytes(b"kernel")
    paths.initrd.write_bytes(b"initrd")
    return paths


def read_box(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as box:
        return {m.name: box.extractfile(m).read() for m in box.getmembers()}  # type: ignore[union-attr]


def test_box_holds_the_root_pool_disk_kernel_initrd_metadata_and_vagrantfile(image: ImagePaths, tmp_path: Path):
    files = read_box(write_box(image, tmp_path / "out" / "lab.box"))
    assert set(files) == {"metadata.json", "Vagrantfile", "box.img", "vmlinuz", "initrd.img"}
    assert files["box.img"] == image.root_pool.read_bytes()
    assert files["vmlinuz"] == b"kernel" and files["initrd.img"] == b"initrd"
    assert json.loads(files["metadata.json"]) == {"provider": "libvirt", "format": "qcow2", "virtual_size": 4}


def test_box_boots_the_zfs_boot_environment_directly_with_a_tank_disk(image: ImagePaths):
    text = box_vagrantfile(image)
    assert 'libvirt.kernel = File.join(__dir__, "vmlinuz")' in text
    assert 'libvirt.initrd = File.join(__dir__, "initrd.img")' in text
    assert '"root=zfs:AUTO rpool=rpool rw console=ttyS0 net.ifnames=0"' in text
    assert 'serial: "TANK0"' in text
    assert f'config.ssh.private_key_path = "{image.operator_key}"' in text
    assert "insert_key = false" in text  # the image's authorized key stays the only one
    assert "config.vm.guest = :debian" in text  # no guest detection round trips


def test_box_vagrantfile_is_valid_ruby(image: ImagePaths, tmp_path: Path):
    path = tmp_path / "Vagrantfile"
    path.write_text(box_vagrantfile(image))
    result = subprocess.run(["ruby", "-c", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_box_name_follows_the_root_pool_recipe_only(image: ImagePaths, tmp_path: Path):
    name = box_name(image)
    assert name.startswith("recovery-lab-") and len(name) == len("recovery-lab-") + 12
    assert box_name(replace(image, log=tmp_path / "other.log")) == name
    assert box_name(replace(image, root_pool=image.root_pool.with_name("rpool-def456.qcow2"))) != name


def test_virtual_size_rounds_up_to_whole_gib(tmp_path: Path):
    disk = tmp_path / "d.qcow2"
    fake_qcow2(disk, 512 * 1024**2)
    assert virtual_size_gib(disk) == 1
    fake_qcow2(disk, 4 * 1024**3 + 1)
    assert virtual_size_gib(disk) == 5


def test_a_raw_disk_is_refused(tmp_path: Path):
    disk = tmp_path / "raw.img"
    disk.write_bytes(b"\0" * 64)
    with pytest.raises(BoxError, match="not a qcow2"):
        virtual_size_gib(disk)


def test_missing_root_pool_is_reported(image: ImagePaths, tmp_path: Path):
    image.root_pool.unlink()
    with pytest.raises(BoxError, match="build_lab_image"):
        write_box(image, tmp_path / "x.box")


def test_box_list_parsing_keeps_libvirt_boxes():
    listing = (
        "1700000000,,ui,info,recovery-lab-aaa\n"
        "1700000000,,box-name,recovery-lab-aaa\n1700000000,,box-provider,libvirt\n1700000000,,box-version,0\n"
        "1700000000,,box-name,other\n1700000000,,box-provider,virtualbox\n1700000000,,box-version,0\n"
    )
    assert parse_box_list(listing) == {"recovery-lab-aaa"}


def test_ensure_box_does_not_rebuild_a_box_vagrant_has(image: ImagePaths, monkeypatch: pytest.MonkeyPatch):
    calls: list[list[str]] = []

    def fake_vagrant(argv: list[str], cwd: Path | None = None) -> str:
        calls.append(argv)
        return f"1,,box-name,{box_name(image)}\n1,,box-provider,libvirt\n"

    monkeypatch.setattr(vagrant_box, "_vagrant", fake_vagrant)
    assert vagrant_box.ensure_box(image, progress=lambda line: None) == box_name(image)
    assert calls == [["vagrant", "box", "list", "--machine-readable"]]


def test_ensure_box_adds_under_its_name_and_removes_the_staged_file(image: ImagePaths, monkeypatch: pytest.MonkeyPatch):
    added: list[list[str]] = []

    def fake_vagrant(argv: list[str], cwd: Path | None = None) -> str:
        if "add" in argv:
            assert Path(argv[-1]).is_file()
            added.append(argv)
        return ""

    monkeypatch.setattr(vagrant_box, "_vagrant", fake_vagrant)
    name = vagrant_box.ensure_box(image, progress=lambda line: None, prefix=["ip", "netns", "exec", "ns"])
    assert added and added[0][:3] == ["ip", "netns", "exec"] and added[0][-3:-1] == ["--name", name]
    assert not list((image.cache / "vagrant").iterdir())


def test_a_new_recipe_replaces_the_lab_boxes_of_earlier_recipes(image: ImagePaths, monkeypatch: pytest.MonkeyPatch):
    listing = (
        "1,,box-name,recovery-lab-000000000000\n1,,box-provider,libvirt\n"
        "1,,box-name,mine\n1,,box-provider,libvirt\n"
    )
    monkeypatch.setattr(vagrant_box, "_vagrant", lambda argv, cwd=None: listing if "list" in argv else "")
    removed: list[list[str]] = []
    monkeypatch.setattr(vagrant_box, "remove_boxes", lambda names, prefix=None: removed.append(names))
    vagrant_box.ensure_box(image, progress=lambda line: None)
    assert removed == [["recovery-lab-000000000000"]]
