"""`headwater contracts check`: conf/ passes; breaking changes fail with a precise sentence."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from devstack.cli import main
from streaming.contracts.compat import problems
from streaming.contracts.model import load_contract

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]


def test_repository_contracts_pass(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--conf", str(REPO / "conf"), "contracts", "check"]) == 0
    out = capsys.readouterr().out
    assert "contracts: shop.orders (v1, v2; backward): ok" in out
    assert "contracts: shop.payments (v1; backward): ok" in out


def broken_conf(tmp_path: Path, old: str, new: str, compatibility: str = "backward") -> Path:
    conf = tmp_path / "conf"
    shutil.copytree(REPO / "conf", conf)
    path = conf / "contracts/shop.orders.yaml"
    text = path.read_text().replace("compatibility: backward", f"compatibility: {compatibility}")
    head, sep, v2 = text.partition("\n  2:\n")
    assert old in v2, old
    path.write_text(head + sep + v2.replace(old, new, 1))
    return conf


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "required: [event_id,",
            "required: [coupon_code, event_id,",
            "shop.orders v2 is not backward compatible with v1: field 'coupon_code' is required in the new version but data of the old one may lack it",
        ),
        (
            "enum: [EUR, USD, GBP, JPY]",
            "enum: [EUR, USD, GBP]",
            "shop.orders v2 is not backward compatible with v1: field 'currency' allows fewer values (JPY no longer): the new version rejects old data",
        ),
        (
            "items: {type: integer, minimum: 1}",
            "items: {type: number, minimum: 1}",
            "shop.orders v2 is not backward compatible with v1: field 'items' changes type from int to double",
        ),
        (
            "amount: {type: number, minimum: 0,",
            "amount: {type: number, minimum: 1,",
            "shop.orders v2 is not backward compatible with v1: field 'amount' minimum goes from 0.0 to 1.0: the new version rejects old data",
        ),
    ],
)
def test_breaking_backward_changes_fail_precisely(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, message: str
) -> None:
    conf = broken_conf(tmp_path, old, new)
    assert message in problems(load_contract(conf, "shop.orders"))
    assert main(["--conf", str(conf), "contracts", "check"]) == 1
    assert f"contracts: {message}" in capsys.readouterr().err


def test_forward_mode_refuses_dropping_a_required_field(tmp_path: Path) -> None:
    conf = broken_conf(tmp_path, "type: object", "type: object", "forward")
    text = (conf / "contracts/shop.orders.yaml").read_text()
    head, sep, v2 = text.partition("\n  2:\n")
    v2 = v2.replace(", items]", "]").replace("      items: {type: integer, minimum: 1}\n", "")
    (conf / "contracts/shop.orders.yaml").write_text(head + sep + v2)
    assert problems(load_contract(conf, "shop.orders")) == [
        "shop.orders v2 is not forward compatible with v1: field 'items' is required by old readers but the new version may leave it out"
    ]


def test_full_mode_checks_both_ways(tmp_path: Path) -> None:
    conf = broken_conf(
        tmp_path, "enum: [EUR, USD, GBP, JPY]", "enum: [EUR, USD, GBP, JPY, CHF]", "full"
    )
    assert problems(load_contract(conf, "shop.orders")) == [
        "shop.orders v2 is not forward compatible with v1: field 'currency' allows fewer values (CHF no longer): old readers reject new data"
    ]
