"""StoreFlow settings, declared once.

Every setting is read from an environment variable ``STOREFLOW_<NAME>`` (or a ``.env`` file in the
working directory). The reference page ``docs/settings.md`` is generated from these declarations
(``storeflow settings --markdown``) and a test checks that it is up to date.

Analytics parameters (``gap_s``, ``min_dwell_s``, ...) are chain-wide defaults; a store overrides them
in the ``settings:`` block of its layout file (see :func:`store_params`).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("storeflow"))


class Settings(BaseSettings):
    """All StoreFlow settings. Environment variable: ``STOREFLOW_`` + upper-case field name."""

    model_config = SettingsConfigDict(env_prefix="STOREFLOW_", env_file=".env", extra="ignore")

    # --- services -------------------------------------------------------------------------------
    database_url: str | None = Field(
        None,
        description="PostgreSQL URL (e.g. postgresql://postgres@127.0.0.1:5432/storeflow). "
        "Unset: an embedded PostgreSQL is started under data_dir.",
    )
    timescaledb: Literal["auto", "require", "off"] = Field(
        "auto",
        description="Use TimescaleDB hypertables: auto = when the extension is available, "
        "require = fail without it, off = plain tables with BRIN indexes.",
    )
    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Directory for the embedded PostgreSQL, the embedded broker and other local state.",
    )
    mqtt_url: str | None = Field(
        None,
        description="MQTT broker as mqtt://host:port or mqtts://host:port. Unset: the demo starts an "
        "embedded broker; other commands use mqtt://127.0.0.1:1883.",
    )
    mqtt_username: str | None = Field(None, description="MQTT user name.")
    mqtt_password: str | None = Field(None, description="MQTT password.")
    mqtt_ca_file: Path | None = Field(None, description="CA bundle for mqtts:// brokers (system CAs when unset).")
    topic_prefix: str = Field("storeflow", description="First level of every MQTT topic StoreFlow uses.")

    # --- ingest ---------------------------------------------------------------------------------
    ingest_group: str = Field(
        "storeflow-ingest",
        description="MQTT shared-subscription group; start more ingest processes with the same group to scale out.",
    )
    ingest_client_id: str | None = Field(
        None, description="MQTT client id of this ingest process (persistent session); default "
        "<group>-<host>-<slot>, stable across restarts, the slot taken from a lock file under data_dir."
    )
    ingest_max_batch_reads: int = Field(
        200_000, description="Commit once this many reads are buffered (reads)."
    )
    ingest_max_batch_delay_s: float = Field(
        0.5, description="Commit at the latest this long after the first buffered message (seconds)."
    )
    ingest_inflight: int = Field(
        1000,
        description="MQTT receive window: unacknowledged QoS 1 messages the broker may send before the "
        "commit (sent as the MQTT 5 Receive Maximum; the broker's max_queued_messages must hold the backlog, "
        "see docs/ingest.md).",
    )
    ingest_metrics_port: int = Field(9108, description="Port of the Prometheus /metrics endpoint of `storeflow ingest run` (0: off).")
    ingest_session_expiry_s: int = Field(
        7 * 86400, description="How long the broker keeps an ingest process's session and its queued messages "
        "while the process is down (seconds)."
    )
    ingest_retention_interval_s: float = Field(
        3600.0, description="How often `storeflow ingest run` drops raw data older than retention_days (seconds)."
    )
    retention_days: float = Field(
        90.0, description="Raw tag reads and door counts older than this are dropped (days; 0 keeps everything)."
    )

    # --- analytics (chain defaults; per-store overrides in the layout's settings block) --------------
    gap_s: float = Field(30.0, description="Absences up to this long do not split a visit (seconds).")
    min_dwell_s: float = Field(10.0, description="Visits shorter than this are pass-bys (seconds).")
    trip_gap_s: float = Field(1200.0, description="A gap in a tag's reads longer than this ends a trip (seconds).")
    cell_m: float = Field(0.5, description="Heatmap cell edge (metres).")
    purchase_window_s: float = Field(
        1800.0, description="A purchase up to this long after a trip's end still counts for that trip (seconds)."
    )
    analyze_margin_s: float = Field(
        3600.0, description="Reads this far before and after an analysed range are read so that visits and trips "
        "crossing the boundary are handled once (seconds)."
    )

    # --- API ------------------------------------------------------------------------------------
    api_host: str = Field("127.0.0.1", description="Address `storeflow serve` listens on.")
    api_port: int = Field(8000, description="Port `storeflow serve` listens on.")
    api_workers: int = Field(
        0, ge=0, description="Worker processes of `storeflow serve` (each with its own connection pool and "
        "report cache); 0 = one per two CPU cores, at most 4."
    )
    api_auth: bool = Field(
        True, description="Require API tokens (`storeflow token create`). Off only for a local demo."
    )
    query_timeout_s: float = Field(10.0, description="Time limit of every API/report query (seconds).")
    query_max_rows: int = Field(100_000, description="Row cap of every API/report query (rows).")
    api_cache_s: float = Field(
        300.0, ge=0, description="Longest time (seconds) the API reuses a computed report; a new analysis run, "
        "import or ingest batch of the store invalidates it at once. 0 = no cache."
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")


#: Settings a store's layout may override in its ``settings:`` block.
STORE_PARAMS: tuple[str, ...] = ("gap_s", "min_dwell_s", "trip_gap_s", "cell_m", "purchase_window_s")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once from the environment)."""
    return Settings()


def store_params(overrides: dict[str, Any] | None, settings: Settings | None = None) -> dict[str, float]:
    """Analytics parameters for one store: chain defaults updated by the store's overrides."""
    s = settings or get_settings()
    params = {name: float(getattr(s, name)) for name in STORE_PARAMS}
    for key, value in (overrides or {}).items():
        if key in STORE_PARAMS:
            params[key] = float(value)
    return params


def settings_markdown() -> str:
    """The settings reference page (docs/settings.md), derived from the declarations above."""
    lines = [
        "# Settings",
        "",
        "Generated by `storeflow settings --markdown` from `storeflow/settings.py`; do not edit by hand.",
        "Each setting is read from the environment variable in the first column (or a `.env` file).",
        f"Per-store overrides (layout `settings:` block): {', '.join(f'`{p}`' for p in STORE_PARAMS)}.",
        "",
        "| variable | default | meaning |",
        "| --- | --- | --- |",
    ]
    for name, field in Settings.model_fields.items():
        if field.default_factory is not None:
            default = "platform user data dir" if name == "data_dir" else "(computed)"
        else:
            default = "unset" if field.default is None else str(field.default)
        lines.append(f"| `STOREFLOW_{name.upper()}` | {default} | {field.description} |")
    return "\n".join(lines) + "\n"
