"""``ota-dmclient``: the installed-image records the Uptane checks rely on.

The engine records, after each ECU install and each rollback, what is now on the ECU
(``dmclient.installed.record``): the next vehicle version manifest reports it and the
release-counter check (no rollback to an older release) compares against it. The engine
also reads them (``dmclient.installed.list``) to find the image a single-bank ECU is
reflashed with on rollback. After a campaign that changed the remote configuration
succeeded, the engine records the values written and read back
(``dmclient.configuration.record``): the next manifest reports them, and the Director stops
assigning a configuration-only release once they are its values. Same ``dmclient`` group as
the other dmclient methods.
"""

from __future__ import annotations

from agent.ipc.declarations.dmclient import HASHES, LENGTH
from agent.ipc.declarations.dmclient_check import NAME, TARGET_NAME
from agent.ipc.registry import Group, Method
from agent.ipc.schema import Int, MapOf, Null, Record, Str

INSTALLED = Record(name=TARGET_NAME, length=LENGTH, hashes=HASHES, release_counter=Int(minimum=0),
                   doc="the image on an ECU (its target name, length, hashes) and its release counter")

GROUP = Group(
    "dmclient",
    Method("dmclient.installed.record",
           params=Record(ecu=NAME, image=INSTALLED),
           result=Null(),
           doc="Record what is installed on an ECU now (after an install or a rollback)."),
    Method("dmclient.installed.list",
           result=Record(ecus=MapOf(INSTALLED, doc="per ECU name")),
           doc="The installed-image record of every configured ECU that has one."),
    Method("dmclient.configuration.record",
           params=Record(values=MapOf(Str(min_len=1, max_len=128),
                                      doc="configuration item -> the value read back from every ECU of it")),
           result=Null(),
           doc="Record remote configuration values a successful campaign wrote and read back (the manifest "
               "reports them)."),
    doc="Installed-image records (Uptane state).",
)
