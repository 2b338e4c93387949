"""The KRaft cluster id the broker's storage is formatted with."""

import base64
import uuid

import pytest

from devstack.services import kafka_broker


def test_cluster_ids_are_22_url_safe_characters_and_never_look_like_an_option(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 0xf8 as first byte encodes to "-" in URL-safe base64: the id CI once drew.
    dashed = uuid.UUID(bytes=b"\xf8" + b"\x01" * 15)
    plain = uuid.UUID(bytes=b"\x01" * 16)
    draws = iter([dashed, plain])
    monkeypatch.setattr(kafka_broker.uuid, "uuid4", lambda: next(draws))

    cluster_id = kafka_broker.new_cluster_id()

    assert base64.urlsafe_b64encode(dashed.bytes).decode().startswith("-")
    assert cluster_id == base64.urlsafe_b64encode(plain.bytes).rstrip(b"=").decode()
    assert len(cluster_id) == 22
