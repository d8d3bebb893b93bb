import pytest

from recovery.zfs.salvage import SalvageError, relative


def test_relative_path_inside_the_dataset():
    assert relative("/srv/www/cgi-bin/notes.txt", "/srv/www/cgi-bin") == "notes.txt"
    assert relative("/srv/www/cgi-bin/a/b", "/srv/www/cgi-bin/") == "a/b"


@pytest.mark.parametrize("path", ["/srv/www/cgi-binx/f", "/etc/passwd", "/srv/www/cgi-bin/../../etc/shadow",
                                  "/srv/www/cgi-bin"])
def test_paths_outside_the_dataset_are_refused(path):
    with pytest.raises(SalvageError):
        relative(path, "/srv/www/cgi-bin")
