"""Skipped-image messages reach agent_logs and the status view's recent_logs: they name the
image by its path inside the dataset (train/<class>/<file>), never by the server's absolute
path (issue 9, item 12)."""

from __future__ import annotations

from training_agent.adapters.trainers.data import StreamedSplit
from training_agent.adapters.trainers.images import decode_many
from training_agent.adapters.trainers.pytorch import PyTorchTrainer

from .conftest import Recorder, make_request
from .test_trainer_images import splits_of_folder, write_dataset


def test_unreadable_images_are_named_inside_the_dataset(tmp_path):
    root = tmp_path / "work" / "jobs" / "j" / "data"
    write_dataset(root, per_class=2)
    broken = root / "train" / "c1" / "broken.jpg"
    broken.write_bytes(b"not an image at all")
    files = sorted((root / "train").rglob("*.*"))
    _, _, cached = decode_many(files, 32, threads=2)
    streamed = StreamedSplit([(f, 0) for f in files], 32, threads=2, workers=0).skipped
    for messages in (cached, streamed):
        [message] = messages
        assert message.startswith("c1/broken.jpg: "), message
        assert str(tmp_path) not in message, message


def test_the_trainers_skip_message_has_no_server_path(tmp_path):
    root = tmp_path / "data"
    write_dataset(root)
    (root / "train" / "c1" / "broken.jpg").write_bytes(b"not an image at all")
    sink = Recorder()
    PyTorchTrainer().train(make_request(tmp_path, splits_of_folder(root), epochs=1), sink)
    [skipped] = [m for m in sink.messages if m.startswith("skipped")]
    assert "train/c1/broken.jpg: " in skipped and str(tmp_path) not in skipped, skipped
