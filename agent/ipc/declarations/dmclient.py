"""``ota-dmclient``: download orders, the package cache, progress events.

A download order is a list of targets; ``length`` and ``hashes`` always describe the
image that ends in the cache (its SHA-256 is its cache address). ``url`` serves the full
image (encrypted when ``encryption`` is given: AES-256-GCM, ciphertext || tag, content key
wrapped to the vehicle's key, see :mod:`dmclient.encryption`); ``delta`` offers a bsdiff4
patch against a cached base image. Target and order ids are returned by
``dmclient.download.start``; the other download methods take a list of either.

The schemas here check shape (types, hex digests, base64, ranges); the daemon checks
meaning on top (https URLs, base64 sizes, a url or a delta per target) and answers
``-32602`` invalid params naming the field.
"""

from __future__ import annotations

from agent.ipc.registry import Event, Group, Method
from agent.ipc.schema import AbsPath, Enum, Hex, Int, ListOf, Null, Nullable, Num, Opt, Record, Str

ID = Str(pattern=r"[0-9a-f]{12}(-[0-9]{1,4})?", doc="an order id, or a target id '<order>-<index>'")
IDS = ListOf(ID, min_items=1, max_items=256)
HASHES = Record(sha256=Hex(32), sha512=Opt(Hex(64)), doc="digests (lower-case hex)")
URL = Str(pattern=r"\S+", max_len=2048, doc="https:// URL, or a path on the configured backend")
B64 = Str(pattern=r"[A-Za-z0-9+/]+={0,2}", max_len=256, doc="base64")
LENGTH = Int(minimum=1, maximum=1 << 40, doc="bytes")
OWNER = Str(pattern=r"[A-Za-z0-9][A-Za-z0-9._:/+-]{0,127}", doc="pin owner, e.g. 'campaign:42', 'rollback:engine'")
STATE = Enum("queued", "downloading", "patching", "decrypting", "paused", "done", "failed", "cancelled")

ENCRYPTION = Record(
    algorithm=Enum("AES-256-GCM"),
    key_wrap=Enum("ECDH-ES-P256-HKDF-SHA256-A256KW"),
    ephemeral_key=B64,
    wrapped_key=B64,
    nonce=B64,
    hashes=HASHES,
    doc="the full image at 'url' is encrypted; hashes are those of the served ciphertext || tag",
)
DELTA = Record(
    base=HASHES,
    url=URL,
    length=LENGTH,
    hashes=HASHES,
    doc="a bsdiff4 patch (as served: url, length, hashes) made from the cached image 'base'",
)
TARGET = Record(
    name=Opt(Str(pattern=r"[A-Za-z0-9][A-Za-z0-9._:+-]{0,63}")),
    url=Opt(URL),
    length=LENGTH,
    hashes=HASHES,
    encryption=Opt(ENCRYPTION),
    delta=Opt(DELTA),
    doc="one image to fetch into the cache (url or delta required)",
)
PROGRESS = Record(
    id=ID,
    order=ID,
    name=Str(),
    state=STATE,
    bytes=Int(minimum=0, doc="bytes of the current download received"),
    committed=Int(minimum=0, doc="of those, bytes fsynced and recorded: a restart resumes from here"),
    total=Int(minimum=0, doc="bytes of the current download in all"),
    rate=Nullable(Num(minimum=0), doc="bytes/s (moving average), null while unknown"),
    eta=Nullable(Num(minimum=0), doc="seconds to completion, null while unknown"),
)
STATUS = Record(
    {**PROGRESS.fields},
    sha256=Hex(32),
    length=LENGTH,
    source=Nullable(Enum("full", "delta", "cache"), doc="how the image was obtained"),
    path=Nullable(AbsPath(doc="the verified image in the cache (state done)")),
    error=Nullable(Str()),
    notes=ListOf(Str(), doc="what happened on the way (fallbacks, restarts)"),
    pin=Nullable(OWNER),
)
STATUS_LIST = Record(targets=ListOf(STATUS))
CACHE_ENTRY = Record(
    sha256=Hex(32),
    sha512=Nullable(Hex(64)),
    size=Int(minimum=0),
    path=AbsPath(),
    pins=ListOf(OWNER),
    last_used=Num(minimum=0, doc="seconds since the epoch"),
)

GROUP = Group(
    "dmclient",
    Method("dmclient.download.start",
           params=Record(targets=ListOf(TARGET, min_items=1, max_items=256),
                         pin=Opt(OWNER)),
           result=Record(order=ID, targets=ListOf(STATUS)),
           doc="Queue a download order; with 'pin' its images are pinned in the cache under that owner."),
    Method("dmclient.download.status", params=Record(ids=Opt(IDS)), result=STATUS_LIST,
           doc="Status of the given targets / orders (all when 'ids' is omitted)."),
    Method("dmclient.download.pause", params=Record(ids=IDS), result=STATUS_LIST,
           doc="Pause at the next chunk; the bytes so far are kept."),
    Method("dmclient.download.resume", params=Record(ids=IDS), result=STATUS_LIST,
           doc="Queue paused (or failed: retry) targets again; they continue where they stopped."),
    Method("dmclient.download.cancel", params=Record(ids=IDS), result=STATUS_LIST,
           doc="Cancel; partial files are deleted, verified images stay in the cache."),
    Method("dmclient.cache.list",
           result=Record(budget=Int(minimum=0), used=Int(minimum=0), entries=ListOf(CACHE_ENTRY)),
           doc="The package cache: verified images (least recently used first) and their pins."),
    Method("dmclient.cache.pin", params=Record(sha256=Hex(32), owner=OWNER), result=Null(),
           doc="Protect an image from eviction (rollback image, active campaign)."),
    Method("dmclient.cache.unpin", params=Record(sha256=Opt(Hex(32)), owner=OWNER),
           result=Record(removed=Int(minimum=0)),
           doc="Drop the owner's pin on an image (on every image when sha256 is omitted)."),
    Event("dmclient.download.progress", params=Record(targets=ListOf(PROGRESS, min_items=1)),
          doc="Bytes, rate and ETA of the running targets that moved, every progress_interval."),
    Event("dmclient.download.state", params=Record(target=STATUS),
          doc="A target changed state (queued, downloading, ..., done with its cache path, failed)."),
    doc="The download manager: download orders, package cache, progress.",
)
