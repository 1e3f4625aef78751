"""What the driver's display shows, kept by the HMI agent and handed to display bindings.

:class:`DisplayModel` holds one view per campaign: the offer and its consent state
(from :class:`~hmi_agent.consent.ConsentBook`), the campaign phase, the progress
per ECU (``None``: the download) and the result, fed by the engine's
``hmi_agent.display`` calls. Every change goes to each :class:`DisplayBinding` as
the campaign's whole view, so a binding never has to merge partial updates:

* :class:`EventBinding`: publishes ``hmi_agent.display.changed`` over IPC (what
  ``otactl hmi``, the terminal HMI of the bench, renders);
* the head unit (SOME/IP) is a second binding with the same one method.

Pure: no I/O here; the bindings do it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from typing import Any

#: views of ended campaigns kept for a display that connects late
KEEP_ENDED = 5


class DisplayBinding(ABC):
    """One way to show a campaign's view to the driver."""

    @abstractmethod
    def show(self, view: Mapping[str, Any]) -> None:
        """Show ``view`` (the whole view of one campaign, see :meth:`DisplayModel.view`); must not block."""


class EventBinding(DisplayBinding):
    """The terminal HMI's binding: each view as an ``hmi_agent.display.changed`` event."""

    def __init__(self, publish: Callable[[str, Mapping[str, Any]], Any]) -> None:
        self.publish = publish

    def show(self, view: Mapping[str, Any]) -> None:
        self.publish("hmi_agent.display.changed", view)


class DisplayModel:
    def __init__(self, bindings: Iterable[DisplayBinding] = ()) -> None:
        self.bindings = list(bindings)
        self._views: dict[str, dict[str, Any]] = {}

    def _view(self, campaign_id: str) -> dict[str, Any]:
        view = self._views.get(campaign_id)
        if view is None:
            view = self._views[campaign_id] = {"campaign_id": campaign_id, "consent": None, "phase": None,
                                               "text": None, "progress": {}, "result": None, "detail": None}
            ended = [cid for cid, v in self._views.items() if v["result"] is not None]
            for cid in ended[:-KEEP_ENDED]:
                del self._views[cid]
        return view

    def view(self, campaign_id: str) -> dict[str, Any] | None:
        view = self._views.get(campaign_id)
        return _copy(view) if view is not None else None

    def views(self) -> list[dict[str, Any]]:
        """Every view kept, oldest first."""
        return [_copy(v) for v in self._views.values()]

    def consent(self, consent: Mapping[str, Any]) -> None:
        """An offer or its decision changed (a :class:`~hmi_agent.consent.Consent` as JSON)."""
        view = self._view(str(consent["campaign_id"]))
        view["consent"] = dict(consent)
        self._show(view)

    def campaign(self, params: Mapping[str, Any]) -> None:
        """An ``hmi_agent.display`` call of the engine: text, phase, progress of an ECU, result."""
        view = self._view(str(params["campaign_id"]))
        for key in ("text", "phase", "result", "detail"):
            if params.get(key) is not None:
                view[key] = params[key]
        if "bytes_total" in params:
            ecu = params.get("ecu") or ""  # "": the download of every image
            view["progress"][ecu] = {"step": params.get("step"), "bytes_done": int(params.get("bytes_done", 0)),
                                     "bytes_total": int(params["bytes_total"])}
        elif "progress" in params:
            view["progress"][""] = {"step": params.get("step"), "percent": float(params["progress"])}
        self._show(view)

    def _show(self, view: Mapping[str, Any]) -> None:
        for binding in self.bindings:
            binding.show(_copy(view))


def _copy(view: Mapping[str, Any]) -> dict[str, Any]:
    return {**view, "progress": {k: dict(v) for k, v in view["progress"].items()}}
