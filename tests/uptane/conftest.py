"""Fixtures of the Uptane tests: a bench PKI and a built world per session, copied per test.

Each test gets its own copy of the world (repositories, route, registry, keys) and
its own backend serving it over mutual TLS, so tests may tamper with the repositories
freely. Everything is generated at run time in tmp dirs.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.pki import BenchPki, generate

from .world import InProcessBackend, Vehicle, build_world


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> BenchPki:
    return generate(tmp_path_factory.mktemp("uptane-pki"))


@pytest.fixture(scope="session")
def world_template(tmp_path_factory: pytest.TempPathFactory, pki: BenchPki) -> Path:
    world = tmp_path_factory.mktemp("uptane-world") / "world"
    build_world(world, pki)
    return world


@pytest.fixture
def world(tmp_path: Path, world_template: Path) -> Path:
    dst = tmp_path / "world"
    shutil.copytree(world_template, dst)
    return dst


@pytest.fixture
def backend(world: Path) -> Iterator[InProcessBackend]:
    be = InProcessBackend(world / "backend.yaml")
    yield be
    be.stop()


@pytest.fixture
def vehicle(tmp_path: Path, world: Path, pki: BenchPki, backend: InProcessBackend) -> Iterator[Vehicle]:
    v = Vehicle(tmp_path / "vehicle", world, pki, backend.url)
    yield v
    v.close()
