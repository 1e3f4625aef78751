"""Task routes (FAW paper 3.2.3): vehicle versions as nodes, releases as edges, staged rollout.

The cloud presets a route; a vehicle that reports its vehicle version gets the release
of the edge leaving that node, with no one deploying tasks by hand. A route file::

    format: 1
    route: bv-mainline
    edges:
      - from: BV OS D 1.0.0
        to: BV OS D 1.1.0
        release: bv-1.1.0          # a release in the Image repository whose target is `to`
        stage: published           # draft | test | passed | published
      - from: BV OS D 1.1.0
        to: BV OS D 1.2.0
        release: bv-1.2.0
        stage: test
        test_group: [BENCHVIN000000001]

Configuration-only releases (remote configuration, FAW paper 3.4) do not move a vehicle
along the route: they are listed per node under ``configurations``, with the same stages::

    configurations:
      - applies_to: BV OS D 1.1.0
        release: bv-1.1.0-sport      # a configuration-only release applying to that version
        stage: published

Such an entry is the configuration the cars on that node should have: the Director assigns
it to a car on the node that has no software edge to take now, until the car's signed
vehicle manifest reports every value of it (see :mod:`bench.repository.director`).
Changing a node's configuration is replacing its entry: as for edges, at most one
published entry per node, a VIN in at most one test group per node.

The paper's three-node route is the two edges above. Stages follow the release flow of
the Aliyun IoV platform (upload, create version, *test device group*, test, test passed,
publish): ``draft`` reaches no vehicle; ``test`` and ``passed`` reach only the VINs in
``test_group``; ``published`` reaches every vehicle. Publishing is editing the stage:
the Director re-reads the file when it changes.

Rules, checked on load: versions follow the vehicle version grammar; an edge goes
forward (``to`` newer than ``from``, same model and platform), so a route has no cycles;
at most one *published* edge leaves a node, and a VIN is in at most one test group of
the edges leaving a node, so every vehicle has at most one next step (a chain or a
graph: several nodes may lead to the same one). A vehicle in the test group of an
edge takes that edge, ahead of the published one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agent.config.node import Node, load_yaml
from dmclient.uptane.custom import check_ident
from update_agent import vehicle_version
from update_agent.vehicle_version import VehicleVersion

STAGES = ("draft", "test", "passed", "published")


@dataclass(frozen=True)
class Edge:
    source: VehicleVersion
    target: VehicleVersion
    release: str
    stage: str
    test_group: frozenset[str]
    where: str

    def reaches(self, vin: str) -> bool:
        if self.stage == "published":
            return True
        if self.stage in ("test", "passed"):
            return vin in self.test_group
        return False

    @property
    def key(self) -> str:
        if self.source == self.target:  # a configuration entry
            return f"{self.source} configuration ({self.release})"
        return f"{self.source} -> {self.target} ({self.release})"


def _pick(edges: tuple[Edge, ...], current: VehicleVersion, vin: str) -> Edge | None:
    """Of the edges leaving ``current``: the one whose test group has ``vin``, else the published one."""
    leaving = [e for e in edges if e.source == current]
    tested = [e for e in leaving if e.stage in ("test", "passed") and vin in e.test_group]
    if tested:
        return tested[0]
    return next((e for e in leaving if e.stage == "published"), None)


@dataclass(frozen=True)
class Route:
    name: str
    edges: tuple[Edge, ...]
    source: str
    #: configuration-only releases per node (an Edge whose source and target are that node)
    configurations: tuple[Edge, ...] = ()

    def next_edge(self, current: VehicleVersion, vin: str) -> Edge | None:
        """The edge a vehicle on ``current`` takes now, or None (last node, not on the route, not yet rolled out)."""
        return _pick(self.edges, current, vin)

    def configuration(self, current: VehicleVersion, vin: str) -> Edge | None:
        """The configuration-only release a vehicle on ``current`` should have, or None."""
        return _pick(self.configurations, current, vin)

    def nodes(self) -> list[VehicleVersion]:
        return sorted({e.source for e in self.edges} | {e.target for e in self.edges})


def _version(node: Node, key: str) -> VehicleVersion:
    return vehicle_version.parse(node.get(key, str), source=node.source, key=node.key_path(key))


def _edge(node: Node, *, configuration: bool = False) -> Edge:
    if configuration:
        source = target = _version(node, "applies_to")
    else:
        source, target = _version(node, "from"), _version(node, "to")
        if not source.same_line(target):
            raise node.error(f"{source} and {target} are not of the same model and platform", "to")
        if not source < target:
            raise node.error(f"an edge must lead to a newer vehicle version: {target} is not newer than {source}",
                             "to")
    try:
        release = check_ident(node.get("release", str), node.key_path("release"))
    except ValueError as e:
        raise node.error(str(e).split(": ", 1)[1], "release") from e
    stage = node.choice("stage", STAGES)
    group = node.raw("test_group", [])
    if not isinstance(group, list) or not all(isinstance(v, str) and v for v in group):
        raise node.error("expected a list of VINs", "test_group")
    if stage in ("test", "passed") and not group:
        raise node.error(f"stage {stage!r} needs a test_group of VINs", "test_group")
    edge = Edge(source, target, release, stage, frozenset(group), node.key_path())
    node.done()
    return edge


def load_route(path: str | Path) -> Route:
    root = load_yaml(path)
    fmt = root.integer("format", 1)
    if fmt != 1:
        raise root.error(f"only format 1 is understood, got {fmt}", "format")
    name = root.get("route", str, Path(path).stem)
    edges = tuple(root.items("edges", _edge))
    configurations = tuple(root.items("configurations", lambda n: _edge(n, configuration=True), []))
    for what, entries in (("edges leave", edges), ("configurations apply to", configurations)):
        for i, e in enumerate(entries):
            for other in entries[:i]:
                if other.source != e.source:
                    continue
                if other.stage == e.stage == "published":
                    raise root.error(f"two published {what} {e.source}: {other.key} and {e.key}", e.where)
                both = (other.test_group & e.test_group) if {other.stage, e.stage} <= {"test", "passed"} else set()
                if both:
                    raise root.error(f"VIN {sorted(both)[0]} is in the test groups of two {what} {e.source}",
                                     e.where)
    root.done()
    return Route(name, edges, str(path), configurations)
