"""Fixtures of the end-to-end tier."""

from __future__ import annotations

from pathlib import Path

import pytest

from streaming.config import Settings
from tests.conftest import write_conf

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def shop(broker: Settings, tmp_path: Path, unique: str) -> Settings:
    port = int(broker.profile.kafka.bootstrap_servers.rsplit(":", 1)[1])
    topics = [f"t{unique}.orders", f"t{unique}.payments", f"t{unique}.customers"]
    settings = write_conf(tmp_path, topics=topics, kafka_port=port)
    gold = tmp_path / "conf" / "gold"
    gold.mkdir()
    for name in ("revenue_per_minute", "customer_orders"):
        text = (REPO / "conf/gold" / f"{name}.yaml").read_text()
        (gold / f"{name}.yaml").write_text(text)
    return settings
