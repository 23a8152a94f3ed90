"""Prometheus text: samples of named metrics, and kube-apiserver's write counters."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
Labels = tuple[tuple[str, str], ...]


def parse_metrics(text: str, names: Iterable[str]) -> dict[str, dict[Labels, float]]:
    """The samples of the named metrics: {name: {sorted label pairs: value}}."""
    wanted = tuple(names)
    out: dict[str, dict[Labels, float]] = {n: {} for n in wanted}
    for line in text.splitlines():
        if not line.startswith(wanted):
            continue
        match = _SAMPLE.match(line)
        if match is None or match.group(1) not in out:
            continue
        labels = tuple(sorted(_LABEL.findall(match.group(3) or "")))
        out[match.group(1)][labels] = float(match.group(4))
    return out


def label(labels: Labels, key: str) -> str:
    return dict(labels).get(key, "")


WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION", "APPLY"})
WriteKey = tuple[str, str]  # (verb, resource[/subresource])


def apiserver_requests(text: str) -> Counter[WriteKey]:
    """kube-apiserver's requests so far (every client), by verb and resource[/subresource];
    a failed code is marked in the resource (`pods [404]`), a request for no resource shows
    its group or `-`."""
    samples = parse_metrics(text, ["apiserver_request_total"])["apiserver_request_total"]
    out: Counter[WriteKey] = Counter()
    for labels, value in samples.items():
        sub = label(labels, "subresource")
        resource = label(labels, "resource") + (f"/{sub}" if sub else "")
        code = label(labels, "code")
        failed = "" if code.startswith("2") else f" [{code}]"
        out[(label(labels, "verb"), (resource or label(labels, "group") or "-") + failed)] += int(
            value)
    return out


def apiserver_writes(text: str) -> Counter[WriteKey]:
    return Counter({k: v for k, v in apiserver_requests(text).items() if k[0] in WRITE_VERBS})


def apiserver_watch_events(text: str) -> Counter[tuple[str, str]]:
    """Watch events kube-apiserver has sent so far (every watcher), by (kind, group): work
    the request counters do not show."""
    samples = parse_metrics(text, ["apiserver_watch_events_total"])["apiserver_watch_events_total"]
    out: Counter[tuple[str, str]] = Counter()
    for labels, value in samples.items():
        out[(label(labels, "resource") or label(labels, "kind"), label(labels, "group"))] += int(
            value)
    return out
