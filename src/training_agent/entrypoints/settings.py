"""Settings from the environment (and `.env`), with the names the README fixes (its
"Configuration" section); which store each picks is described in docs/architecture.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, computed_field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    # the seed's names
    supabase_url: str | None = None
    supabase_key: str | None = Field(None, repr=False)
    gcp_bucket_name: str | None = None
    google_application_credentials: str | None = None
    mcp_api_key: str | None = Field(None, repr=False)
    log_level: str = "INFO"
    # added
    training_agent_home: Path = Path(".training-agent")
    database_url: str | None = Field(None, repr=False)
    model_store_url: str | None = None
    s3_endpoint_url: str | None = None
    storage_emulator_host: str | None = None
    notify_webhook_url: str | None = Field(None, repr=False)
    max_concurrent_jobs: int = Field(1, ge=1, le=64)
    # `serve`, `watch` and `mcp` keep a worker process loaded ahead of the next job
    standby_worker: bool = Field(True, alias="TRAINING_AGENT_STANDBY_WORKER")
    # dataset intake caps (refuse zip bombs and archives with absurd member counts)
    max_dataset_bytes: int = Field(20 * 1024**3, ge=1, alias="TRAINING_AGENT_MAX_DATASET_BYTES")
    max_dataset_members: int = Field(200_000, ge=1, alias="TRAINING_AGENT_MAX_DATASET_MEMBERS")
    # the trainer's (handed to the adapters by the container: adapters/trainers/environment.py)
    cache_gb: float | None = Field(None, ge=0, alias="TRAINING_AGENT_CACHE_GB")
    # the decoded cache on the scratch disk, over the memory budget (unset: half the free space)
    disk_cache_gb: float | None = Field(None, ge=0, alias="TRAINING_AGENT_DISK_CACHE_GB")
    overlap: bool | None = Field(None, alias="TRAINING_AGENT_OVERLAP")  # unset: with CUDA
    # streamed on a GPU: the CPU's part of each batch (unset: balanced batch by batch)
    stream_cpu_share: float | None = Field(None, ge=0, le=1,
                                           alias="TRAINING_AGENT_STREAM_CPU_SHARE")
    checkpoint_seconds: float = Field(30.0, ge=0, alias="TRAINING_AGENT_CHECKPOINT_SECONDS")
    plugins: str | None = Field(None, alias="TRAINING_AGENT_PLUGINS")
    training_agent_offline: str | None = None  # these three: "1", "true", "yes" or "on"
    hf_hub_offline: str | None = None
    transformers_offline: str | None = None
    xdg_cache_home: str | None = None
    # torchrun's description of the process group (unset: one process)
    world_size: int = Field(1, ge=1)
    local_rank: int = Field(0, ge=0)
    local_world_size: int | None = Field(None, ge=1)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def metadata_backend(self) -> str:
        if self.database_url:
            return "postgres"
        if self.supabase_url and self.supabase_key:
            return "supabase"
        return "sqlite"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def model_store(self) -> str:
        if self.model_store_url:
            return self.model_store_url.rstrip("/")
        if self.gcp_bucket_name:
            return f"gs://{self.gcp_bucket_name}"
        return (self.home / "store").as_uri()

    @computed_field  # type: ignore[prop-decorator]
    @property
    def notifier_kind(self) -> str:
        return "webhook" if self.notify_webhook_url else "log"

    @property
    def home(self) -> Path:
        return self.training_agent_home.expanduser().resolve()

    @computed_field  # type: ignore[prop-decorator]
    @property
    def sqlite_path(self) -> str:
        return str(self.home / "training-agent.sqlite3")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def work_root(self) -> str:
        return str(self.home / "work")


def trainer_environment(settings: Settings) -> dict[str, Any]:
    """The values adapters/trainers/environment.py holds, from the settings."""
    offline = any((v or "").strip().lower() in ("1", "true", "yes", "on") for v in
                  (settings.training_agent_offline, settings.hf_hub_offline,
                   settings.transformers_offline))
    plugins = None if settings.plugins is None else tuple(
        n.strip() for n in settings.plugins.split(",") if n.strip())
    cache_home = Path(settings.xdg_cache_home) if settings.xdg_cache_home else None
    return {"plugins": plugins, "offline": offline, "cache_gb": settings.cache_gb,
            "disk_cache_gb": settings.disk_cache_gb,
            "overlap": settings.overlap, "stream_cpu_share": settings.stream_cpu_share,
            "checkpoint_seconds": settings.checkpoint_seconds,
            "cache_home": cache_home, "world_size": settings.world_size,
            "local_rank": settings.local_rank, "local_world_size": settings.local_world_size}


def describe_settings_error(exc: ValidationError) -> str:
    """One line naming each bad environment variable (and its value, unless it is a secret)."""
    by_env = {(f.alias or name).lower(): (name, f) for name, f in Settings.model_fields.items()}
    problems = []
    for err in exc.errors():
        key = str(err["loc"][0]) if err["loc"] else "settings"
        field = by_env.get(key.lower())
        shown = f"{key.upper()}"
        if field is not None and field[1].repr and "input" in err:
            shown += f"={err['input']}"
        problems.append(f"{shown}: {err['msg']}")
    return "invalid settings: " + "; ".join(problems)
