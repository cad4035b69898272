"""`project create` checks at once what can be checked (issue 9, item 11): a dataset that does
not exist, a folder instead of a zip, a zip with no train/ layout are refused there, not when
training starts, and a refused create leaves no project row and no copy of the zip."""

from __future__ import annotations

import sqlite3
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from training_agent.entrypoints import cli
from training_agent.testing.datasets import make_dataset_zip


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TRAINING_AGENT_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)  # no developer .env is read
    return tmp_path / "home"


def create(dataset: str, *extra: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli.main, ["project", "create", "--name", "p",
                                           "--dataset", dataset, *extra])
    return result.exit_code, result.stdout, result.stderr


def projects(home: Path) -> int:
    db = home / "training-agent.sqlite3"
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM projects").fetchone()[0])


def stored_files(home: Path) -> list[Path]:
    return [p for p in (home / "store").rglob("*") if p.is_file()]


def no_layout_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("images/cat/1.jpg", b"\xff\xd8 cat")
        zf.writestr("images/dog/1.jpg", b"\xff\xd8 dog")
    return path


def one_class_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("train/cat/1.jpg", b"\xff\xd8 cat")
    return path


def assert_refused(home: Path, code: int, err: str, *words: str) -> None:
    assert code == 1, err
    [line] = err.strip().splitlines()
    assert line.startswith("error: ") and "Traceback" not in err
    for word in words:
        assert word in line, line
    assert projects(home) == 0, "a refused create wrote a project row"
    assert stored_files(home) == [], "a refused create left a copy of the zip in the store"


def test_a_file_url_that_does_not_exist_is_refused_at_create(home, tmp_path):
    url = (tmp_path / "nowhere" / "d.zip").as_uri()
    code, _, err = create(url)
    assert_refused(home, code, err, url, "does not exist")


@pytest.mark.parametrize("as_url", [False, True])
def test_a_directory_is_refused_as_not_a_zip(home, tmp_path, as_url):
    folder = tmp_path / "flowers"
    (folder / "train" / "rose").mkdir(parents=True)
    code, _, err = create(folder.as_uri() if as_url else str(folder))
    assert_refused(home, code, err, "flowers", "is a directory, not a zip")


@pytest.mark.parametrize("as_url", [False, True])
@pytest.mark.parametrize("make, words", [
    (no_layout_zip, "no train/<class>/<image> layout"),
    (one_class_zip, "at least two class folders"),
])
def test_a_zip_without_a_usable_layout_is_refused_at_create(home, tmp_path, as_url, make, words):
    archive = make(tmp_path / "d.zip")
    code, _, err = create(archive.as_uri() if as_url else str(archive))
    assert_refused(home, code, err, "d.zip", words)


def test_a_zip_bomb_is_refused_at_create(home, tmp_path):
    archive = make_dataset_zip(tmp_path / "d.zip", classes=2, per_class={"train": 2})
    with zipfile.ZipFile(archive, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("dataset/train/class_a/bomb.png", bytes(8 << 20))
    code, _, err = create(str(archive))
    assert_refused(home, code, err, "dataset/train/class_a/bomb.png", "zip bomb")


def test_a_good_zip_or_file_url_is_still_created(home, tmp_path):
    archive = make_dataset_zip(tmp_path / "d.zip", classes=2, per_class={"train": 2})
    code, out, err = create(str(archive))
    assert code == 0, err
    code, out, err = create(archive.as_uri())
    assert code == 0, err
    assert projects(home) == 2 and len(stored_files(home)) == 1


def test_a_refused_config_leaves_no_copy_of_the_zip_in_the_store(home, tmp_path):
    archive = make_dataset_zip(tmp_path / "d.zip", classes=2, per_class={"train": 2})
    code, _, err = create(str(archive), "--config", '{"epochs": -1}')
    assert_refused(home, code, err, "epochs")
