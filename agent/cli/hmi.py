"""``otactl hmi``: the terminal HMI of the bench: the offer, the driver's answer, live progress, the result.

Renders what ``ota-hmi-agent`` shows the driver (``hmi_agent.display.changed``, one
whole view per campaign): the offer with its release notes, size, estimated install
time, what the driver cannot do meanwhile and whether it is mandatory (with its
deadline); each decision (postponed until, scheduled for, accepted by whom); the
campaign's phases and a progress bar per ECU (rich); the result.

When an offer waits for the driver, the answer is taken from ``--answer`` (one per
question, in order: ``accept``, ``postpone``, ``decline``, ``schedule=WINDOW``) or else
read as a line from stdin (``accept`` / ``postpone`` / ``schedule WINDOW`` /
``decline``; the first letter is enough). Answers go in the audit trail as
``hmi:<user>``. ``--until-result`` ends at the first campaign result (exit code as
``otactl update``); ``--timeout`` fails if nothing is shown for that long.

``--someip`` is the same HMI as the head unit sees it: fed by the HMI agent's SOME/IP
service (:mod:`hmi_agent.someip_service`, found through SOME/IP-SD as configured in the
stack config's ``hmi_agent.someip``) instead of IPC, this command being a SOME/IP node at
``--address``; answers are the service's methods and go in the audit trail as
``someip:<address>``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from rich.console import Console, Group
from rich.panel import Panel
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn
from rich.text import Text

from agent.cli._console import console
from agent.cli._engine import RESULT_EXIT
from agent.cli.consent import ANSWERS, answer_params, decision_text, user_source, when
from agent.errors import ConfigurationError, OtaError, OtaTimeoutError
from agent.ipc.sync import SyncClient

if TYPE_CHECKING:
    from bench.headunit.client import SyncHeadUnit

ORDER = 46
SHORT = {a[0]: a for a in ANSWERS}
#: where ``otactl hmi --someip`` is a SOME/IP node (the bench head unit is 127.0.0.30)
SOMEIP_ADDRESS = "127.0.0.31"
#: its SOME/IP client id
SOMEIP_CLIENT_ID = 0x0202


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("hmi", help="terminal HMI: show offers and progress, answer as the driver",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--answer", action="append", default=[], metavar="ANSWER",
                   help="answer the next question: accept | postpone | decline | schedule=WINDOW (repeatable)")
    p.add_argument("--campaign", metavar="ID", help="show only this campaign")
    p.add_argument("--until-result", action="store_true", help="end when a campaign shows its result")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="fail when nothing is shown for S seconds")
    p.add_argument("--someip", action="store_true", help="use the head-unit SOME/IP service instead of IPC")
    p.add_argument("--config", metavar="STACK.yaml",
                   help="--someip: the stack config with hmi_agent.someip (default: $OTA_STACK_CONFIG)")
    p.add_argument("--address", default=SOMEIP_ADDRESS, metavar="IP",
                   help=f"--someip: this node's IPv4 address (default {SOMEIP_ADDRESS})")
    p.set_defaults(func=run)


def parse_answer(text: str) -> tuple[str, str | None]:
    """``accept`` | ``postpone`` | ``decline`` | ``schedule WINDOW`` | ``schedule=WINDOW`` (or a first letter)."""
    word, _, rest = text.strip().replace("=", " ", 1).partition(" ")
    action = SHORT.get(word.lower(), word.lower()) if len(word) == 1 else word.lower()
    if action not in ANSWERS:
        raise ValueError(f"answer {text.strip()!r}: expected accept, postpone, schedule WINDOW or decline")
    window = rest.strip() or None
    if (action == "schedule") != (window is not None):
        raise ValueError("schedule takes a window (HH:MM-HH:MM or ISO START/END); the other answers none")
    return action, window


def offer_panel(consent: dict[str, Any], rules: dict[str, Any] | None = None) -> Panel:
    """The offer as the driver sees it."""
    o = consent["offer"]
    lines = [Text.assemble(("Update ", "bold"), (f"{o['from_version']} -> {o['to_version']}", "bold cyan")),
             Text(f"ECUs: {', '.join(o['ecus'])}    size: {o['size_bytes'] / 1024:.1f} KiB    "
                  f"estimated install time: {o['est_install_s'] / 60:.1f} min")]
    if o.get("release_notes"):
        lines += [Text("Release notes:", "bold"), Text(str(o["release_notes"]))]
    if o.get("restrictions"):
        lines += [Text("During the installation:", "bold"), *(Text(f"  - {r}") for r in o["restrictions"])]
    if consent.get("mandatory"):
        due = f", due {when(consent['deadline'])}" if consent.get("deadline") else ""
        lines.append(Text(f"Mandatory update{due}: after the deadline it installs at the next maintenance window",
                          "yellow"))
    if rules is not None:
        left = max(0, int(rules["postpone_limit"]) - int(consent["postponements"]))
        lines.append(Text(f"You can postpone it {left} more time(s)."))
    lines.append(Text(f"Decision: {decision_text(consent)} ({consent['source']})", "bold"))
    return Panel(Group(*lines), title=f"campaign {consent['campaign_id']}")


class HmiCalls(Protocol):
    """The HMI agent's methods the terminal calls: an IPC client, or :class:`SomeIpCalls`."""

    def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any: ...


class SomeIpCalls:
    """``hmi_agent.consent.status`` (the rules) and ``.answer`` through the head-unit SOME/IP service."""

    def __init__(self, head_unit: SyncHeadUnit) -> None:
        self.head_unit = head_unit

    def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        p = params or {}
        if method == "hmi_agent.consent.status":  # what the offer field said
            limit = self.head_unit.client.postpone_limit
            return {"rules": {"postpone_limit": limit} if limit is not None else None}
        if method == "hmi_agent.consent.answer":  # the source is the service's: someip:<our address>
            action = next(a for a, decision in ANSWERS.items() if decision == p["decision"])
            return self.head_unit.answer(action, p.get("window"), p.get("campaign_id"))
        raise OtaError(f"{method} is not offered by the head-unit service")


class TerminalHmi:
    """Shows views and answers questions; the state between events (see the module docstring)."""

    def __init__(self, hmi: HmiCalls, out: Console, answers: Iterator[str] | None, campaign: str | None) -> None:
        self.hmi = hmi
        self.out = out
        self.answers = answers
        self.campaign = campaign
        self.decisions: dict[str, str] = {}
        self.phases: dict[str, str | None] = {}
        self.bars: dict[tuple[str, str], TaskID] = {}
        self.results: dict[str, str] = {}
        self.progress = Progress(TextColumn("{task.description:<28}"), BarColumn(), DownloadColumn(),
                                 TextColumn("{task.fields[step]}"), console=out)

    def show(self, view: dict[str, Any]) -> str | None:
        """Render one view; the campaign's result once it has one."""
        cid = view["campaign_id"]
        if self.campaign and cid != self.campaign:
            return None
        consent = view.get("consent")
        if consent is not None and self.decisions.get(cid) != decision_text(consent):
            self.decisions[cid] = decision_text(consent)
            if consent["decision"] == "pending":
                self.out.print(offer_panel(consent, self.rules()))
                self.ask(cid)
            else:
                self.out.print(f"[bold]{cid}[/bold]: {decision_text(consent)} ({consent['source']})",
                               highlight=False)
        if view.get("phase") and self.phases.get(cid) != view["phase"] and view["phase"] != "done":
            self.phases[cid] = view["phase"]
            self.out.print(f"[bold]{cid}[/bold]: {view['phase']}", highlight=False)
        for ecu, p in view["progress"].items():
            if "bytes_total" not in p:
                continue
            key = (cid, ecu)
            label = f"flash {ecu}" if ecu else "download"
            if key not in self.bars:
                self.bars[key] = self.progress.add_task(label, total=p["bytes_total"] or None, step=p["step"] or "")
            self.progress.update(self.bars[key], completed=p["bytes_done"], total=p["bytes_total"] or None,
                                 step=p["step"] or "")
        if view.get("result") and cid not in self.results:
            self.results[cid] = view["result"]
            self.out.print(Panel(Text(f"{view['result']}: {view.get('detail') or view.get('text') or ''}"),
                                 title=f"campaign {cid}: result"))
            return str(view["result"])
        return None

    def rules(self) -> dict[str, Any] | None:
        try:
            rules: dict[str, Any] | None = self.hmi.call("hmi_agent.consent.status", {"audit_limit": 0}).get("rules")
        except OtaError:
            return None
        return rules

    def ask(self, cid: str) -> None:
        """Take the driver's answer (``--answer`` or stdin) until one is accepted by the HMI agent."""
        while True:
            if self.answers is not None:
                text = next(self.answers, None)
            else:
                self.out.print("answer: [a]ccept / [p]ostpone / [s]chedule WINDOW / [d]ecline > ", end="")
                line = sys.stdin.readline()
                text = line if line else None
            if text is None:
                self.out.print("(no answer given; the offer waits)")
                return
            try:
                action, window = parse_answer(text)
                got = self.hmi.call("hmi_agent.consent.answer",
                                    answer_params(action, window, user_source("hmi"), cid))
            except (ValueError, OtaError) as e:
                self.out.print(f"[red]not taken: {e}[/red]", highlight=False)
                continue
            self.decisions[cid] = decision_text(got)
            self.out.print(f"[bold]{cid}[/bold]: {decision_text(got)} ({got['source']})", highlight=False)
            return


def render(term: TerminalHmi, views: Callable[[float | None], dict[str, Any] | None], args: argparse.Namespace,
           first: Iterable[dict[str, Any]] = ()) -> int:
    """Show ``first`` (what is under way), then each next view until the result (``--until-result``)."""
    with term.progress:
        result = None
        for view in first:
            if view.get("result") is None:  # ended campaigns are history
                term.show(view)
        while not (args.until_result and result is not None):
            try:
                shown = views(args.timeout)
            except OtaTimeoutError:
                term.out.print(f"error: nothing shown for {args.timeout:g} s", style="red")
                return 1
            if shown is not None:
                result = term.show(shown) or result
    return RESULT_EXIT.get(result or "", 1)


def run(args: argparse.Namespace) -> int:
    out = console()
    answers = iter(args.answer) if args.answer else None
    if args.someip:
        return run_someip(args, out, answers)
    with SyncClient.for_daemon("hmi_agent") as hmi, hmi.subscribe("hmi_agent.display.changed") as events:
        term = TerminalHmi(hmi, out, answers, args.campaign)
        return render(term, lambda timeout: dict(events.get(timeout=timeout).params), args,
                      hmi.call("hmi_agent.display.get")["views"])


def run_someip(args: argparse.Namespace, out: Console, answers: Iterator[str] | None) -> int:
    from agent.cli.daemons import stack_config
    from agent.runtime.config import load_config
    from bench.headunit.client import SyncHeadUnit
    from hmi_agent.config import HmiConfig

    path = stack_config(args.config)
    settings = load_config(HmiConfig, "hmi_agent", path).someip
    if not settings.enabled:
        raise ConfigurationError("the head-unit service is off: hmi_agent.someip.enabled is false", source=str(path))
    with SyncHeadUnit(settings, args.address, client_id=SOMEIP_CLIENT_ID) as head_unit:
        head_unit.start(timeout=args.timeout or 30.0)
        term = TerminalHmi(SomeIpCalls(head_unit), out, answers, args.campaign)
        return render(term, lambda timeout: head_unit.next_update(timeout=timeout).view, args)
