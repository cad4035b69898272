"""The webhook notifier against a real HTTP server on loopback."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.fakes import FakeTrainer
from training_agent.adapters.blobstore.local import LocalBlobStore
from training_agent.adapters.metadata.memory import InMemoryMetadataRepo
from training_agent.adapters.notifiers.webhook import WebhookNotifier
from training_agent.domain.errors import TrainingError
from training_agent.domain.models import JobState
from training_agent.domain.ports import Notification
from training_agent.domain.service import TrainingService
from training_agent.testing.datasets import make_dataset_zip

TOKEN = "T0KEN-in-the-path"


class ChatServer:
    """Answers each POST with the next scripted status (200 once the script runs out)."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.received: list[dict] = []
        self.headers: list[dict] = []
        chat = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                chat.received.append(json.loads(body))
                chat.headers.append(dict(self.headers))
                status = chat.statuses.pop(0) if chat.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/hooks/{TOKEN}?key={TOKEN}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float = 10) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            assert time.monotonic() < deadline, self.received
            time.sleep(0.02)
        return self.received


@pytest.fixture
def chat() -> Iterator[ChatServer]:
    server = ChatServer()
    yield server
    server.httpd.shutdown()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hooks/{TOKEN}"


def service_with(notifier: WebhookNotifier, tmp_path: Path, **trainer) -> TrainingService:
    home = tmp_path / "home"
    service = TrainingService(
        repo=InMemoryMetadataRepo(), blobs=LocalBlobStore(), trainer=FakeTrainer(**trainer),
        notifier=notifier, model_store_url=(home / "store").as_uri(), work_root=home / "work")
    return service


def train_one(service: TrainingService, tmp_path: Path, name: str = "cats") -> str:
    zip_path = make_dataset_zip(tmp_path / "d.zip", classes=2, per_class={"train": 2, "val": 1})
    project = service.create_project(name, service.store_dataset(zip_path),
                                     {"epochs": 1, "pretrained": False})
    job = service.start(project.id)
    return service.run(job.id).id


def test_success_message_names_project_accuracy_and_model(chat, tmp_path):
    notifier = WebhookNotifier(chat.url)
    service = service_with(notifier, tmp_path)
    job_id = train_one(service, tmp_path)
    [msg] = chat.wait_for(1)
    assert msg["event"] == "training_succeeded" and msg["ok"] is True
    assert msg["project_name"] == "cats" and msg["job_id"] == job_id
    assert msg["accuracy"] == 0.75
    assert msg["model_url"].startswith("file://") and msg["model_url"].endswith("model.pth")
    assert msg["text"].startswith("✅ [cats] Training complete")
    assert "0.7500" in msg["text"]
    assert msg["verdict"]["level"] == "ok" and "well above chance" in msg["verdict"]["text"]
    assert chat.headers[0]["Content-Type"] == "application/json"


def test_a_chance_level_model_is_marked_and_worded_so(chat, tmp_path):
    service = service_with(WebhookNotifier(chat.url), tmp_path, accuracy=0.5)
    train_one(service, tmp_path)  # 2 classes, 0.50: chance
    [msg] = chat.wait_for(1)
    assert msg["event"] == "training_succeeded" and msg["ok"] is True
    assert msg["verdict"]["level"] == "chance"
    assert msg["text"].startswith("⚠️ [cats] Training finished, but the model for cats is not "
                                  "clearly better than chance. 0.50 is chance level for 2 "
                                  "classes")


def test_failure_message_names_step_and_cause(chat, tmp_path):
    service = service_with(WebhookNotifier(chat.url), tmp_path,
                           fail_with=TrainingError("loss became NaN at epoch 1"))
    job_id = train_one(service, tmp_path)
    [msg] = chat.wait_for(1)
    assert msg["event"] == "training_failed" and msg["ok"] is False
    assert msg["job_id"] == job_id and msg["step"] == "training"
    assert msg["cause"] == "TrainingError: loss became NaN at epoch 1"
    assert msg["text"].startswith("❌ [cats] Training failed at step training")


def test_retries_after_503_with_backoff(tmp_path):
    chat = ChatServer([503, 502])
    try:
        notifier = WebhookNotifier(chat.url, backoff=0.05)
        t0 = time.monotonic()
        assert notifier.deliver({"text": "hello"}) is True
        assert len(chat.received) == 3 and chat.received[-1] == {"text": "hello"}
        assert time.monotonic() - t0 >= 0.05 * 0.8 + 0.1 * 0.8  # two pauses, doubling
    finally:
        chat.httpd.shutdown()


def test_a_4xx_is_not_retried(tmp_path):
    chat = ChatServer([404])
    try:
        assert WebhookNotifier(chat.url, backoff=0.01).deliver({"text": "x"}) is False
        assert len(chat.received) == 1
    finally:
        chat.httpd.shutdown()


def test_a_job_still_succeeds_fast_when_the_webhook_is_down(tmp_path, caplog):
    url = closed_port_url()
    notifier = WebhookNotifier(url, attempts=4, backoff=0.2, budget=3)
    service = service_with(notifier, tmp_path)
    with caplog.at_level(logging.INFO, logger="training_agent"):
        t0 = time.monotonic()
        job_id = train_one(service, tmp_path)
        ran = time.monotonic() - t0
        job = service.job(job_id)
        assert job.state is JobState.SUCCEEDED
        assert ran < 2.5  # delivery runs beside the job, not in it
        t1 = time.monotonic()
        notifier.flush(10)
        assert time.monotonic() - t1 < 3.5  # bounded by the budget
    assert "unreachable; notification dropped after 4 attempt(s)" in caplog.text
    assert TOKEN not in caplog.text  # the URL's secrets never reach the logs
    assert f"{url.split('/hooks/')[0]}/…" in caplog.text  # scheme, host and port only
    assert service.status(job.project_id).project_status == "pending_evaluation"


def test_the_budget_bounds_a_hanging_webhook():
    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/hooks/{TOKEN}"
        notifier = WebhookNotifier(url, request_timeout=0.3, budget=1.0, backoff=0.1)
        t0 = time.monotonic()
        assert notifier.deliver({"text": "x"}) is False
        assert time.monotonic() - t0 < 1.6


def test_repr_and_errors_hide_the_token():
    notifier = WebhookNotifier(f"https://chat.example.com/v1/spaces/{TOKEN}?key={TOKEN}")
    assert TOKEN not in repr(notifier) and notifier.target == "https://chat.example.com/…"
    with pytest.raises(ValueError) as err:
        WebhookNotifier(f"ftp://chat.example.com/{TOKEN}")
    assert TOKEN not in str(err.value)


def test_notify_never_raises_and_flush_waits_and_logs_no_token(chat, caplog):
    notifier = WebhookNotifier(chat.url)
    with caplog.at_level(logging.DEBUG):
        notifier.notify(Notification(project_id="p", project_name="n", ok=True, message="m",
                                     details={"accuracy": 0.5, "model_url": "gs://b/m.pth"}))
        notifier.flush(5)
    assert TOKEN not in caplog.text
    assert chat.received[0]["model_url"] == "gs://b/m.pth"
