"""``ota-dmclient``: ``dmclient.check``, the Uptane-verified update check.

Declared apart from the download methods (:mod:`agent.ipc.declarations.dmclient`) but in
the same ``dmclient`` group name, so :meth:`Protocol.for_daemon` serves both from the
one socket. The result mirrors :meth:`dmclient.uptane.assignment.CheckResult.to_json`:
``status`` ``nothing`` with ``assignment`` null, or ``update`` with the verified
assignment (per ECU image: URL, length, hashes, release counter, delta, encryption,
flash script), the target vehicle version with its baseline XML in the cache, the
release's configuration change when it has one, and its ``mandatory`` / ``deadline``
when it says; with an independent-download ECU, the Director targets.json bytes it verifies.
"""

from __future__ import annotations

from agent.ipc.declarations.dmclient import ENCRYPTION, HASHES, LENGTH, URL
from agent.ipc.registry import Group, Method
from agent.ipc.schema import AbsPath, Bool, Enum, Int, ListOf, MapOf, Nullable, Opt, Record, Str

NAME = Str(pattern=r"[A-Za-z0-9][A-Za-z0-9._:+-]{0,63}")
TARGET_NAME = Str(min_len=1, max_len=200, doc="target name in the Image and Director repositories")
VEHICLE_VERSION = Str(min_len=1, max_len=64, doc="vehicle software version 'AA OS P S.X.Y<.Z><-T>'")

ECU_ASSIGNMENT = Record(
    ecu=NAME,
    target=TARGET_NAME,
    url=URL,
    length=LENGTH,
    hashes=HASHES,
    release_counter=Int(minimum=0),
    hardware_id=NAME,
    software_version=NAME,
    release=NAME,
    flash_script=NAME,
    delta=Nullable(Record(target=TARGET_NAME, url=URL, length=LENGTH, hashes=HASHES, base=HASHES,
                          doc="bsdiff4 patch from the installed image 'base'")),
    encryption=Nullable(Record(target=TARGET_NAME, url=URL, spec=ENCRYPTION,
                               doc="the image is served encrypted as 'target'")),
    independent=Opt(Record(instance=Int(minimum=1, maximum=0xFFFE, doc="the ECU's SOME/IP 'OTA secondary' "
                                                                      "instance"),
                           install_script=Str(min_len=1, max_len=16 * 1024, doc="handed to the ECU's agent"),
                           doc="a Linux ECU that downloads the image itself (independent download)")),
    doc="one verified ECU image to download and install",
)
ASSIGNMENT = Record(
    target_vehicle_version=VEHICLE_VERSION,
    ecus=ListOf(ECU_ASSIGNMENT),
    baseline=Record(target=TARGET_NAME, length=LENGTH, hashes=HASHES, path=AbsPath(),
                    doc="the verified software baseline XML of the target vehicle version, in the cache"),
    config=Opt(Record(target=TARGET_NAME, length=LENGTH, hashes=HASHES,
                      values=MapOf(Str(min_len=1, max_len=128), doc="configuration item -> value"),
                      doc="the verified configuration change of the release, applied after the images")),
    director_targets=Opt(Record(target=TARGET_NAME, length=LENGTH, hashes=HASHES, path=AbsPath(),
                                doc="the Director targets.json as verified, in the cache (only with an "
                                    "independent-download ECU: its partial verification)")),
    mandatory=Opt(Bool(doc="the release is mandatory (signed by the Director); absent: the release does not say")),
    deadline=Opt(Str(pattern=r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ",
                     doc="ISO 8601 UTC; after it a mandatory update proceeds at the next maintenance window")),
)

GROUP = Group(
    "dmclient",
    Method("dmclient.check",
           params=Record(vehicle_version=VEHICLE_VERSION),
           result=Record(status=Enum("update", "nothing"), vehicle_version=VEHICLE_VERSION,
                         assignment=Nullable(ASSIGNMENT), director_version=Int(minimum=0),
                         image_version=Int(minimum=0), reference_time=Str(doc="ISO-8601 UTC")),
           doc="Upload the signed vehicle version manifest, refresh and cross-check Director and Image "
               "metadata (Uptane full verification) and return the verified assignment, or 'nothing'. "
               "A failed check answers with the verification error (attack named) and changes nothing."),
    doc="Uptane update check.",
)
