"""Output for people (issue 12, item 4): the progress bar's last line once with log lines on
their own lines, whole-number epoch ticks, no matplotlib first-run log, the offline weights
error once and naming the file, project create without importing torch."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys

import pytest

from training_agent.domain.models import TrainingJob
from training_agent.entrypoints.progress import JobProgressBar


def screen(text: str) -> list[str]:
    """What a terminal shows: each line as its last carriage-return segment."""
    return [line.split("\r")[-1].rstrip() for line in text.split("\n") if line.split("\r")[-1]
            .strip()]


def test_the_final_bar_is_printed_once_and_log_lines_are_not_glued_to_it(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    handler = logging.StreamHandler(sys.stderr)  # as the CLI's logging.basicConfig makes it
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [handler])
    monkeypatch.setattr(root, "level", logging.INFO)
    bar = JobProgressBar(file=sys.stderr)
    job = TrainingJob(project_id="p")
    for epoch in (1, 2):
        job.progress = {"epoch": epoch, "epochs": 2, "train_loss": 2.0909529657924875,
                        "val_accuracy": 0.5}
        bar(job)
    logging.getLogger("training_agent.x").info("uploading artifacts")  # after the last epoch
    bar.close()
    logging.getLogger("training_agent.x").info("after the bar")
    lines = screen(err.getvalue())
    assert lines[0] == "INFO training_agent.x: uploading artifacts"
    assert lines[1].startswith("training: 100%") and "2.00/2 epochs" in lines[1]
    assert "train_loss=2.091" in lines[1]
    assert lines[2:] == ["INFO training_agent.x: after the bar"]


def test_the_epoch_axis_has_whole_number_ticks():
    from training_agent.adapters.trainers.artifacts import curves_figure, pyplot

    history = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.2 / e, "val_accuracy": 0.3 * e,
                "train_accuracy": 0.32 * e} for e in (1, 2, 3)]
    fig = curves_figure(history)
    fig.canvas.draw()
    accuracy = fig.axes[1]  # validation beside training accuracy: the gap is the overfitting
    assert [line.get_label() for line in accuracy.get_lines()] == ["train accuracy",
                                                                   "val accuracy"]
    assert list(accuracy.get_lines()[0].get_ydata()) == pytest.approx([0.32, 0.64, 0.96])
    for ax in fig.axes:
        low, high = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if low <= t <= high]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    pyplot().close(fig)


def test_matplotlib_says_nothing_on_its_first_run(tmp_path):
    code = ("import logging, sys; from pathlib import Path\n"
            "logging.basicConfig(level='INFO', stream=sys.stderr)\n"
            "from training_agent.adapters.trainers.artifacts import write_plots\n"
            "h = [{'epoch': 1, 'train_loss': 1.0, 'val_accuracy': 0.5}]\n"
            "write_plots(h, [[1, 0], [0, 1]], ['a', 'b'], 'test', Path(sys.argv[1]))\n")
    env = {**os.environ, "MPLCONFIGDIR": str(tmp_path / "mpl")}  # a first run: no font cache
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=300, check=True)
    assert (tmp_path / "training_curves.png").stat().st_size > 0
    assert (tmp_path / "mpl").exists()  # matplotlib did build its font cache...
    assert "fontManager" not in proc.stderr and "font_manager" not in proc.stderr  # ...quietly


def test_the_offline_weights_error_is_printed_once_and_names_the_file(tmp_path, dataset_zip):
    env = {**os.environ, "TRAINING_AGENT_HOME": str(tmp_path / "home"),
           "TORCH_HOME": str(tmp_path / "torch"), "TRAINING_AGENT_OFFLINE": "1",
           "LOG_LEVEL": "INFO"}
    cli = [sys.executable, "-m", "training_agent"]
    created = subprocess.run([*cli, "project", "create", "--name", "w", "--dataset",
                              str(dataset_zip), "--config",
                              '{"backbone": "resnet18", "image_size": 32, "epochs": 1}'],
                             env=env, capture_output=True, text=True, timeout=300, check=True)
    project_id = created.stdout.splitlines()[-1]
    proc = subprocess.run([*cli, "train", project_id, "--quiet"], env=env,
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.count("pretrained weights for torchvision resnet18") == 1, proc.stderr
    [line] = [x for x in proc.stderr.splitlines() if "pretrained weights" in x]
    assert line.startswith("error: job ") and "WeightsUnavailable" in line
    expected = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert f"expected the file {expected}" in line
    assert '"pretrained": false' in line


@pytest.mark.slow
def test_the_timm_offline_error_names_the_hugging_face_file(monkeypatch):
    import timm.models

    from training_agent.adapters.trainers import environment
    from training_agent.adapters.trainers.timm_provider import provider
    from training_agent.domain.errors import WeightsUnavailable

    environment.configure(offline=True)  # HF_HUB_OFFLINE=1, as the settings hand it on
    monkeypatch.setattr("training_agent.adapters.trainers.timm_provider._cached",
                        lambda cfg: False)
    cfg = timm.models.get_pretrained_cfg("resnet18")
    with pytest.raises(WeightsUnavailable) as err:
        provider._check_weights("resnet18", cfg)
    text = str(err.value)
    assert f"of the Hugging Face repo {cfg.hf_hub_id.split('@')[0]}, under " in text
    assert "models--timm--resnet18" in text and "machine is offline" in text


def test_project_create_checks_the_config_without_importing_torch(tmp_path, dataset_zip):
    """11-15 s before (checking `backbone` imported torch and listed torchvision's models), about
    2 s now: the names come from the backbone catalog."""
    code = ("import sys\nfrom training_agent.entrypoints.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    assert not e.code, e\n"
            "print('imported', sorted(m for m in ('torch', 'torchvision', 'timm') "
            "if m in sys.modules))")
    env = {**os.environ, "TRAINING_AGENT_HOME": str(tmp_path / "home")}
    out = subprocess.run([sys.executable, "-c", code, "project", "create", "--name", "x",
                          "--dataset", str(dataset_zip), "--config",
                          '{"trainer": "timm", "backbone": "efficientnet_b0"}'],
                         env=env, capture_output=True, text=True, timeout=300, check=True).stdout
    assert "imported []" in out
    bad = subprocess.run([sys.executable, "-m", "training_agent", "project", "create",
                          "--name", "x", "--dataset", str(dataset_zip), "--config",
                          '{"backbone": "resnet19"}'], env=env, capture_output=True, text=True,
                         timeout=300)
    assert bad.returncode == 1 and "unknown backbone 'resnet19'" in bad.stderr


