"""The display model: whole views per campaign to every binding; the terminal HMI's answer parsing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from agent.cli.hmi import parse_answer
from hmi_agent.display import DisplayBinding, DisplayModel


class Recorder(DisplayBinding):
    def __init__(self) -> None:
        self.views: list[dict[str, Any]] = []

    def show(self, view: Mapping[str, Any]) -> None:
        self.views.append(dict(view))


def test_each_binding_gets_the_whole_view_of_the_campaign_after_every_change() -> None:
    terminal, head_unit = Recorder(), Recorder()
    model = DisplayModel([terminal, head_unit])
    model.consent({"campaign_id": "c1", "decision": "pending", "offer": {"to_version": "V2"}})
    model.campaign({"campaign_id": "c1", "phase": "flash"})
    model.campaign({"campaign_id": "c1", "ecu": "engine", "step": "transfer", "bytes_done": 10, "bytes_total": 40})
    model.campaign({"campaign_id": "c1", "ecu": None, "step": "download", "bytes_done": 40, "bytes_total": 40})
    model.campaign({"campaign_id": "c1", "phase": "done", "result": "succeeded", "detail": "installed and verified"})
    assert terminal.views == head_unit.views and len(terminal.views) == 5
    last = terminal.views[-1]
    assert last["consent"]["decision"] == "pending" and last["phase"] == "done" and last["result"] == "succeeded"
    assert last["progress"] == {"engine": {"step": "transfer", "bytes_done": 10, "bytes_total": 40},
                                "": {"step": "download", "bytes_done": 40, "bytes_total": 40}}
    assert terminal.views[1]["progress"] == {}  # a view handed out is not changed afterwards
    assert model.views() == [last]


def test_only_the_last_ended_campaigns_are_kept() -> None:
    model = DisplayModel()
    for i in range(8):
        model.campaign({"campaign_id": f"c{i}", "phase": "done", "result": "succeeded"})
    model.campaign({"campaign_id": "open", "phase": "consent"})
    kept = [v["campaign_id"] for v in model.views()]
    assert kept[-1] == "open" and len(kept) <= 6 and "c7" in kept and "c0" not in kept


@pytest.mark.parametrize(("text", "want"), [
    ("accept", ("accept", None)), ("p\n", ("postpone", None)), ("d", ("decline", None)),
    ("schedule 02:00-04:00", ("schedule", "02:00-04:00")), ("schedule=02:00-04:00", ("schedule", "02:00-04:00")),
    ("s 02:00-04:00", ("schedule", "02:00-04:00")),
])
def test_terminal_answers(text: str, want: tuple[str, str | None]) -> None:
    assert parse_answer(text) == want


@pytest.mark.parametrize("text", ["", "later", "schedule", "accept 02:00-04:00"])
def test_terminal_refuses_answers_it_cannot_take(text: str) -> None:
    with pytest.raises(ValueError, match=r"answer|window"):
        parse_answer(text)


def test_terminal_takes_the_answer_from_stdin_and_asks_again_after_a_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from rich.console import Console

    from agent.cli.hmi import TerminalHmi
    from agent.errors import VehicleStateError

    class Hmi:
        def __init__(self) -> None:
            self.answers: list[dict[str, Any]] = []

        def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
            if method == "hmi_agent.consent.status":
                return {"rules": {"postpone_limit": 0}}
            self.answers.append(dict(params or {}))
            if params and params["decision"] == "postponed":
                raise VehicleStateError("campaign 'c1' was postponed 0 times; the limit is 0: accept or schedule it")
            return {"campaign_id": "c1", "decision": "scheduled", "source": "hmi:driver", "window": "02:00-04:00",
                    "not_before": 0.0}

    monkeypatch.setattr("sys.stdin", io.StringIO("p\nschedule 02:00-04:00\n"))
    out = io.StringIO()
    hmi = Hmi()
    term = TerminalHmi(hmi, Console(file=out, width=120), None, None)  # type: ignore[arg-type]
    offer = {"from_version": "V1", "to_version": "V2", "ecus": ["engine"], "size_bytes": 2048, "est_install_s": 60}
    term.show({"campaign_id": "c1", "consent": {"campaign_id": "c1", "decision": "pending", "source": "policy:ask",
                                                "offer": offer, "postponements": 0},
               "phase": "consent", "text": None, "progress": {}, "result": None, "detail": None})
    assert [a["decision"] for a in hmi.answers] == ["postponed", "scheduled"]
    assert hmi.answers[1]["window"] == "02:00-04:00" and hmi.answers[1]["source"].startswith("hmi:")
    text = out.getvalue()
    assert "You can postpone it 0 more time(s)" in text and "not taken" in text and "scheduled 02:00-04:00" in text
