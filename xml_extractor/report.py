"""``xml-extractor report``: the migration's story on one page.

:func:`gather` reads the database with the named queries of ``db/sql/report_*.sql`` (each reads a
table once and groups it: linear, no per-row probe but the events' contract) and returns plain
data; :func:`to_json`, :func:`to_markdown` and :func:`to_html` lay the same figures out. The HTML
page is self-contained: its charts are inline SVG drawn by matplotlib's SVG backend (an optional
extra, ``pip install 'xml-extractor[report]'``: no JavaScript, no network, text kept as text),
with the figures as tables beside them.

A "result" is one committed attempt of one application (a log row), and the attempts a reprocess
replaced (processing_log_history) stay results at their original time: the curves keep the past.
Rates follow progress.py's one definition (the windowed rate and the average since the first
result), the totals are ``status``'s (ops.status).
"""

from __future__ import annotations

import datetime as _dt
import html
import io
import json
import math
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from . import ops
from .db.base import NamedQuery, Statement, _load_sections
from .db.store import utcnow
from .errors import ConfigError
from .progress import (
    AVERAGE_LABEL,
    ETA_LABEL,
    IDLE_AFTER_S,
    RATE_WINDOW_MINUTES,
    format_eta,
    measure,
    rate_per_minute,
    rolling_rates,
)

if TYPE_CHECKING:
    from .db.database import Database

MINUTE = "%Y-%m-%d %H:%M"
MAX_POINTS = 300  # a chart draws at most this many time buckets (the json keeps every minute)
TOP_FAILURE_KINDS = 6  # stage/class pairs drawn one by one; the rest are "other"
INSTALL_HINT = "the html report draws its charts with matplotlib: pip install 'xml-extractor[report]' (or use --format md|json)"


def load_report_queries(dialect: str) -> tuple[dict[str, NamedQuery], dict[str, str]]:
    """report_common.sql's queries (overridden by name by report_<dialect>.sql) and the dialect's
    fragments ({minute})."""
    frags = {k: f.template for k, f in _load_sections(dialect, "fragment", "report_").items()}
    return _load_sections(dialect, "name", "report_"), frags


class _Queries:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.queries, self.fragments = load_report_queries(db.dialect.name)

    def statement(self, name: str) -> Statement:
        """The named report query with the contract's identifiers (as Database.sql)."""
        return Statement(
            self.queries[name].template.format(**self.db.names, **self.fragments), name
        )

    def rows(self, name: str, **params: Any) -> list[tuple]:
        return self.db.autocommit_query(self.statement(name), params)


def _ts(v: Any) -> _dt.datetime | None:
    if v is None or isinstance(v, _dt.datetime):
        return v
    return _dt.datetime.fromisoformat(str(v))


def _minute(v: Any) -> str:
    return str(v).strip()[:16]


def _iso(v: _dt.datetime | None) -> str | None:
    return None if v is None else v.isoformat(sep=" ", timespec="seconds")


def _contract_names(db: Database) -> list[str]:
    members = db.contract.extra.get("members") if isinstance(db.contract.extra, dict) else None
    return [m.name for m in members] if members else [db.contract.name]


def gather(
    db: Database, now: _dt.datetime | None = None, window_minutes: int = RATE_WINDOW_MINUTES
) -> dict:
    """Every figure of the report, as plain data (what --format json prints)."""
    q = _Queries(db)
    now = now or utcnow()
    st = ops.status(db)
    names = _contract_names(db)
    per_minute, total_per_minute = _results_per_minute(q, window_minutes)
    return {
        "generated_at": _iso(now),
        "dialect": db.dialect.name,
        "contracts": names,
        "totals": _totals(st),
        "rate": _rate(q, int(st.get("pending", 0)), now, window_minutes),
        "results_per_minute": per_minute,
        "total_per_minute": total_per_minute,
        "failures_per_minute": _failures_per_minute(q),
        "failures_final": st.get("failures", []),
        "events": _events(q, names[0] if len(names) == 1 else None),
        "runs": _runs(q, now),
    }


def _results_per_minute(q: _Queries, window_minutes: int) -> tuple[list[dict], list[dict]]:
    """Results per minute and instance (current and replaced), and the total per consecutive
    minute (from the log and its history)."""
    cells: dict[tuple[str, int], dict[str, int]] = defaultdict(
        lambda: {"success": 0, "failed": 0, "replaced": 0}
    )
    for minute, inst, status, replaced, n in q.rows("report_results_per_minute"):
        c = cells[(_minute(minute), int(inst))]
        c["success" if status == "success" else "failed"] += int(n)
        if int(replaced):
            c["replaced"] += int(n)
    per_minute: list[dict[str, Any]] = [
        {"minute": m, "instance": i, "results": c["success"] + c["failed"], **c}
        for (m, i), c in sorted(cells.items())
    ]
    totals_by_minute: dict[str, int] = defaultdict(int)
    for r in per_minute:
        totals_by_minute[r["minute"]] += r["results"]
    return per_minute, _continuous(totals_by_minute, window_minutes)


def _rate(q: _Queries, remaining: int, now: _dt.datetime, window_minutes: int) -> dict:
    """Both numbers of progress.py's definition over log + history, and the ETA they imply."""
    span = q.rows("report_result_span")
    total = sum(int(r[0] or 0) for r in span)
    first = min((t for t in (_ts(r[1]) for r in span) if t), default=None)
    last = max((t for t in (_ts(r[2]) for r in span) if t), default=None)
    since = now - _dt.timedelta(minutes=window_minutes)
    recent_rows = q.rows("report_results_since", since=since)
    recent = sum(int(r[0] or 0) for r in recent_rows)
    r_first = min((t for t in (_ts(r[1]) for r in recent_rows) if t), default=None)
    r_last = max((t for t in (_ts(r[2]) for r in recent_rows) if t), default=None)
    rates = measure(total, first, last, recent, r_first, r_last, now, window_minutes)
    eta = rates.eta(remaining)
    at_average = (
        remaining / rates.average_per_min if remaining and rates.average_per_min > 0 else None
    )
    return {
        "definition": f"'{rates.recent_label}': results in the last {window_minutes} min over the observed part "
        f"of the window; '{AVERAGE_LABEL}': every result over the time since the first one "
        "(to now while running, to the last result once idle). A result is one committed attempt.",
        "window_minutes": window_minutes,
        "rate_label": rates.recent_label,
        "recent_per_min": rates.recent_per_min,
        "average_label": AVERAGE_LABEL,
        "average_per_min": rates.average_per_min,
        "running": rates.running,
        "idle_since": _iso(rates.idle_since),
        "results": total,
        "first_result": _iso(first),
        "last_result": _iso(last),
        "remaining": remaining,
        "eta_minutes": None if eta is None else round(eta, 1),
        "eta": format_eta(eta, rates, remaining),
        "minutes_at_average": None if at_average is None else round(at_average, 1),
    }


def _failures_per_minute(q: _Queries) -> list[dict]:
    """Failed attempts per minute, stage and error class."""
    cells: dict[tuple[str, str, str], int] = defaultdict(int)
    for minute, stage, cls, n in q.rows("report_failures_per_minute"):
        cells[(_minute(minute), stage or "-", cls or "-")] += int(n)
    return [
        {"minute": m, "stage": s, "error_class": c, "count": n}
        for (m, s, c), n in sorted(cells.items())
    ]


def _events(q: _Queries, one_contract: str | None) -> list[dict]:
    """Data-quality events by contract, table and kind, the most frequent first."""
    events: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    events_query = "report_events_by_kind_one_contract" if one_contract else "report_events_by_kind"
    for contract, table, kind, n, apps in q.rows(events_query):
        label = contract or one_contract or ops.NOT_ROUTED
        e = events[(label, table, kind)]
        e[0] += int(n)
        e[1] += int(apps)
    return sorted(
        (
            {"contract": c, "table": t, "event_type": k, "events": v[0], "applications": v[1]}
            for (c, t, k), v in events.items()
        ),
        key=lambda e: (-e["events"], e["contract"], e["table"]),
    )


def _runs(q: _Queries, now: _dt.datetime) -> list[dict]:
    """Every run (session) of every instance: when, how many, its average, its outcome."""
    runs = []
    for sid, inst, count, workers, started, last_at, ok, bad in q.rows("report_runs"):
        started, last_at = _ts(started), _ts(last_at)
        running = last_at is not None and (now - last_at).total_seconds() <= IDLE_AFTER_S
        ok, bad = int(ok or 0), int(bad or 0)
        runs.append(
            {
                "session": str(sid),
                "instance": int(inst),
                "instance_count": int(count),
                "workers": int(workers),
                "started": _iso(started),
                "last_commit": _iso(last_at),
                "success": ok,
                "failed": bad,
                "average_per_min": round(rate_per_minute(ok + bad, started, last_at), 1),
                "outcome": "running"
                if running
                else ("ended with failures" if bad else "ended clean"),
            }
        )
    runs.sort(key=lambda r: (r["started"] or "", r["instance"]))
    return runs


def _totals(st: dict) -> dict:
    """status' figures the page opens with (and its own during a reprocess, when it has them)."""
    totals = {
        k: st[k] for k in ("source_rows", "success", "failed", "pending", "done_pct") if k in st
    }
    totals["reprocess_requested"] = st.get("reprocess_requested", 0)
    for k in ("being_redone",):
        if k in st:
            totals[k] = st[k]
    return totals


def _continuous(counts: dict[str, int], window_minutes: int) -> list[dict]:
    """Every minute from the first result's to the last's (zeros filled), with the running total,
    the windowed rate ending there and the average since the first result."""
    if not counts:
        return []
    keys = sorted(counts)
    start, end = (_dt.datetime.strptime(k, MINUTE) for k in (keys[0], keys[-1]))
    n = int((end - start).total_seconds() // 60) + 1
    minutes = [(start + _dt.timedelta(minutes=i)).strftime(MINUTE) for i in range(n)]
    values = [counts.get(m, 0) for m in minutes]
    curve = rolling_rates(values, window_minutes)
    out, acc = [], 0
    for i, (m, v, r) in enumerate(zip(minutes, values, curve)):
        acc += v
        out.append(
            {
                "minute": m,
                "results": v,
                "cumulative": acc,
                "rate_per_min": r,
                "average_per_min": round(acc / (i + 1), 1),
            }
        )
    return out


# -- json and markdown ----------------------------------------------------------------------------


def to_json(data: dict) -> str:
    return json.dumps(data, indent=2, default=str)


def _md_table(rows: list[list[Any]], headers: list[str]) -> str:
    from tabulate import tabulate

    return tabulate(rows, headers=headers, tablefmt="github", intfmt=",") if rows else "(none)"


def to_markdown(data: dict) -> str:
    """The report's figures as Markdown tables, one section per chart of the page."""
    t = data["totals"]
    parts = [
        f"# xml-extractor report ({data['generated_at']} UTC, {data['dialect']}, {', '.join(data['contracts'])})",
        "",
        "## Totals",
        "",
        _md_table([[k, v] for k, v in t.items()], ["figure", "value"]),
        "",
        *_md_rate(data["rate"]),
        *_md_results_and_failures(data),
        *_md_runs(data["runs"]),
    ]
    return "\n".join(parts)


def _md_rate(r: dict) -> list[str]:
    return [
        "## Rate",
        "",
        _md_table(
            [
                [r["rate_label"], f"{r['recent_per_min']:,}/min"],
                [r["average_label"], f"{r['average_per_min']:,}/min"],
                ["results (log and history)", r["results"]],
                ["first result", r["first_result"]],
                ["last result", r["last_result"]],
                ["running", r["running"]],
                ["remaining", r["remaining"]],
                ["ETA", r["eta"]],
                ["minutes at the average", r["minutes_at_average"]],
            ],
            ["figure", "value"],
        ),
        "",
        r["definition"],
        "",
    ]


def _md_results_and_failures(data: dict) -> list[str]:
    return [
        "## Results per minute and instance",
        "",
        _md_table(
            [
                [x["minute"], x["instance"], x["results"], x["success"], x["failed"], x["replaced"]]
                for x in data["results_per_minute"]
            ],
            ["minute (UTC)", "instance", "results", "success", "failed", "of them replaced"],
        ),
        "",
        "## Failures per minute by stage and class",
        "",
        _md_table(
            [
                [x["minute"], x["stage"], x["error_class"], x["count"]]
                for x in data["failures_per_minute"]
            ],
            ["minute (UTC)", "stage", "error class", "failed attempts"],
        ),
        "",
        "## Final failures by stage and class",
        "",
        _md_table(
            [[x["stage"], x["error_class"], x["count"]] for x in data["failures_final"]],
            ["stage", "error class", "applications"],
        ),
        "",
        "## Data-quality events by kind, per contract",
        "",
        _md_table(
            [
                [e["contract"], e["table"], e["event_type"], e["events"], e["applications"]]
                for e in data["events"]
            ],
            ["contract", "table", "kind", "events", "applications"],
        ),
        "",
    ]


RUNS_HEADERS = [
    "session",
    "instance",
    "workers",
    "started (UTC)",
    "last commit (UTC)",
    "ok",
    "failed",
    f"{AVERAGE_LABEL}/min",
    "outcome",
]


def _runs_row(x: dict, session_width: int | None = None) -> list:
    """One run of an instance as the runs tables show it (md and html), in RUNS_HEADERS' order."""
    return [
        x["session"][:session_width],
        f"{x['instance']}/{x['instance_count']}",
        x["workers"],
        x["started"],
        x["last_commit"],
        x["success"],
        x["failed"],
        x["average_per_min"],
        x["outcome"],
    ]


def _md_runs(runs: list[dict]) -> list[str]:
    return ["## Runs", "", _md_table([_runs_row(x) for x in runs], RUNS_HEADERS), ""]


# -- html -----------------------------------------------------------------------------------------

PALETTE = [
    "#4269d0",
    "#efb118",
    "#ff725c",
    "#6cc5b0",
    "#3ca951",
    "#ff8ab7",
    "#a463f2",
    "#97bbf5",
    "#9c6b4e",
    "#9498a0",
]
INK, MUTED, GRID = "#1f2933", "#6b7785", "#e4e7eb"


def _bucket(n_minutes: int) -> int:
    """Minutes per drawn point: at most MAX_POINTS points, on a round step."""
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 240, 360, 720, 1440):
        if n_minutes / step <= MAX_POINTS:
            return step
    return math.ceil(n_minutes / MAX_POINTS)


def _binned(
    minutes: list[str], series: dict[str, list[float]], step: int
) -> tuple[list[_dt.datetime], dict[str, list[float]]]:
    xs = [_dt.datetime.strptime(m, MINUTE) for m in minutes[::step]]
    out = {k: [sum(v[i : i + step]) for i in range(0, len(v), step)] for k, v in series.items()}
    return xs, out


def _figure(height: float = 3.1, left: float = 0.8, top: float = 0.42, bottom: float = 0.45) -> Any:
    """A figure with fixed margins in inches (no layout pass: one draw, not two)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10.5, height), dpi=96)
    fig.patch.set_alpha(0)
    fig.subplots_adjust(
        left=left / 10.5, right=1 - 0.25 / 10.5, top=1 - top / height, bottom=bottom / height
    )
    return fig


def _style(ax: Any, ylabel: str = "") -> None:
    import matplotlib.dates as mdates

    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color(GRID)
    ax.tick_params(colors=MUTED, labelsize=9)
    ax.grid(axis="y", color=GRID, linewidth=0.8)
    ax.set_axisbelow(True)
    if ylabel:
        ax.set_ylabel(ylabel, color=MUTED, fontsize=9)
    if ax.xaxis.get_major_locator().__class__.__name__.startswith("Auto"):
        loc = mdates.AutoDateLocator(minticks=4, maxticks=9)
        ax.xaxis.set_major_locator(loc)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc))


def _svg(fig: Any) -> str:
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context(
        {"svg.fonttype": "none"}
    ):  # text stays text: smaller, crisp, the page's font
        fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg") :]


def _empty(ax: Any, text: str) -> None:
    ax.text(
        0.5, 0.5, text, ha="center", va="center", color=MUTED, fontsize=11, transform=ax.transAxes
    )
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)


def _chart_done(data: dict) -> str:
    """Cumulative results per instance (stacked) and the projection to the end at the rate."""
    fig = _figure(3.4)
    ax = fig.add_subplot()
    tpm = data["total_per_minute"]
    if not tpm:
        _empty(ax, "nothing has been processed yet")
        return _svg(fig)
    minutes = [x["minute"] for x in tpm]
    index = {m: i for i, m in enumerate(minutes)}
    instances = sorted({x["instance"] for x in data["results_per_minute"]})
    per: dict[str, list[float]] = {f"instance {i}": [0.0] * len(minutes) for i in instances}
    for x in data["results_per_minute"]:
        per[f"instance {x['instance']}"][index[x["minute"]]] += x["results"]
    xs = [_dt.datetime.strptime(m, MINUTE) + _dt.timedelta(minutes=1) for m in minutes]
    cum = {k: _cumsum(v) for k, v in per.items()}
    step = _bucket(len(minutes))
    pick = list(range(step - 1, len(xs), step)) + (
        [len(xs) - 1] if (len(xs) - 1) % step != step - 1 else []
    )
    ax.stackplot(
        [xs[0] - _dt.timedelta(minutes=1)] + [xs[i] for i in pick],
        *[[0.0] + [v[i] for i in pick] for v in cum.values()],
        labels=list(cum),
        colors=PALETTE[: len(cum)],
        alpha=0.85,
        linewidth=0,
    )
    total = tpm[-1]["cumulative"]
    r = data["rate"]
    goal = total + r["remaining"]
    if r["remaining"]:
        ax.axhline(goal, color=MUTED, linestyle=(0, (2, 3)), linewidth=1)
        ax.annotate(
            f"all done: {goal:,} results",
            (xs[0], goal),
            textcoords="offset points",
            xytext=(2, 4),
            color=MUTED,
            fontsize=9,
        )
        rate = (
            r["recent_per_min"]
            if r["running"] and r["recent_per_min"] > 0
            else r["average_per_min"]
        )
        if rate > 0:
            end = xs[-1] + _dt.timedelta(minutes=r["remaining"] / rate)
            label = (
                r["eta"]
                if r["running"]
                else f"at the {AVERAGE_LABEL}: {_duration(r['remaining'] / rate)} more"
            )
            ax.plot(
                [xs[-1], end],
                [total, goal],
                color=INK,
                linestyle=(0, (4, 3)),
                linewidth=1.4,
                label=label,
            )
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_formatter(_thousands())
    _style(ax, "results (cumulative)")
    _legend_above(ax)
    return _svg(fig)


def _chart_rate(data: dict) -> str:
    """Results per minute (bars) with the windowed rate and the average since the first result."""
    fig = _figure()
    ax = fig.add_subplot()
    tpm = data["total_per_minute"]
    if not tpm:
        _empty(ax, "no results yet: no rate")
        return _svg(fig)
    minutes = [x["minute"] for x in tpm]
    step = _bucket(len(minutes))
    xs, b = _binned(minutes, {"n": [float(x["results"]) for x in tpm]}, step)
    per_min = [v / step for v in b["n"]]
    width = _dt.timedelta(minutes=step)
    ax.stairs(
        per_min,
        _edges(xs, width),
        fill=True,
        color="#b3c5f2",
        linewidth=0,
        label="results per minute" + (f" ({step}-min mean)" if step > 1 else ""),
    )
    curve = [tpm[min(i + step - 1, len(tpm) - 1)] for i in range(0, len(tpm), step)]
    ends = [x + width for x in xs]
    r = data["rate"]
    marker = (
        {"marker": "o", "markersize": 4} if len(curve) < 20 else {}
    )  # a short run: points, not a line
    ax.plot(
        ends,
        [c["rate_per_min"] for c in curve],
        color=PALETTE[0],
        linewidth=2,
        label=r["rate_label"],
        **marker,
    )
    ax.plot(
        ends,
        [c["average_per_min"] for c in curve],
        color=PALETTE[2],
        linewidth=1.6,
        linestyle=(0, (5, 2)),
        label=AVERAGE_LABEL,
        **marker,
    )
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_formatter(_thousands())
    _style(ax, "per minute")
    _legend_above(ax)
    return _svg(fig)


def _chart_failures(data: dict) -> str:
    """Failed attempts over time, stacked by stage and class (the biggest few, the rest as other)."""
    fig = _figure(3.0)
    ax = fig.add_subplot()
    fpm, tpm = data["failures_per_minute"], data["total_per_minute"]
    if not fpm or not tpm:
        _empty(ax, "no failed attempt")
        return _svg(fig)
    by_kind: dict[str, int] = defaultdict(int)
    for f in fpm:
        by_kind[f"{f['stage']}: {f['error_class']}"] += f["count"]
    top = [k for k, _ in sorted(by_kind.items(), key=lambda kv: -kv[1])[:TOP_FAILURE_KINDS]]
    minutes = [x["minute"] for x in tpm]
    index = {m: i for i, m in enumerate(minutes)}
    series: dict[str, list[float]] = {k: [0.0] * len(minutes) for k in top}
    for f in fpm:
        k = f"{f['stage']}: {f['error_class']}"
        k = k if k in series else "other"
        series.setdefault(k, [0.0] * len(minutes))[index[f["minute"]]] += f["count"]
    step = _bucket(len(minutes))
    xs, b = _binned(minutes, series, step)
    width = _dt.timedelta(minutes=step)
    bottom = [0.0] * len(xs)
    colors = [PALETTE[i] for i in (2, 1, 6, 8, 5, 9, 3)]
    edges = _edges(xs, width)
    for i, (k, v) in enumerate(b.items()):
        upper = [x + y for x, y in zip(bottom, v)]
        ax.stairs(
            upper,
            edges,
            baseline=bottom,
            fill=True,
            color=colors[i % len(colors)],
            linewidth=0,
            label=f"{k} ({by_kind.get(k, sum(v)):,.0f})",
        )
        bottom = upper
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_formatter(_thousands())
    _style(ax, f"failed attempts / {step} min" if step > 1 else "failed attempts / min")
    _legend_above(ax)
    return _svg(fig)


def _chart_events(data: dict) -> str:
    """Data-quality events by kind, one bar segment per contract."""
    ev = data["events"]
    kinds: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for e in ev:
        kinds[e["event_type"]][e["contract"]] += e["events"]
    order = sorted(kinds, key=lambda k: sum(kinds[k].values()))
    fig = _figure(
        max(1.8, 0.42 * len(order) + 0.9),
        left=1.9,
        top=0.42 if len({e["contract"] for e in ev}) > 1 else 0.15,
    )
    ax = fig.add_subplot()
    if not ev:
        _empty(ax, "no data-quality event")
        return _svg(fig)
    contracts = sorted({e["contract"] for e in ev})
    left = [0.0] * len(order)
    for i, c in enumerate(contracts):
        v = [float(kinds[k].get(c, 0)) for k in order]
        ax.barh(order, v, left=left, color=PALETTE[(i + 3) % len(PALETTE)], height=0.62, label=c)
        left = [a + b for a, b in zip(left, v)]
    for y, total in enumerate(left):
        ax.annotate(
            f"{total:,.0f}",
            (total, y),
            textcoords="offset points",
            xytext=(4, -3),
            color=INK,
            fontsize=9,
        )
    ax.set_xlim(right=max(left) * 1.12)
    ax.xaxis.set_major_formatter(_thousands())
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(colors=MUTED, labelsize=9)
    ax.grid(axis="x", color=GRID, linewidth=0.8)
    ax.set_axisbelow(True)
    ax.set_xlabel("events", color=MUTED, fontsize=9)
    if len(contracts) > 1:
        _legend_above(ax)
    return _svg(fig)


OUTCOME_COLORS = {
    "ended clean": PALETTE[4],
    "ended with failures": PALETTE[1],
    "running": PALETTE[0],
}


def _chart_runs(data: dict) -> str:
    """Each run as a bar from its start to its last commit, one row per instance, coloured by outcome."""
    import matplotlib.dates as mdates

    runs = [r for r in data["runs"] if r["started"] and r["last_commit"]]
    instances = sorted({r["instance"] for r in runs})
    fig = _figure(max(1.6, 0.5 * len(instances) + 1.2), left=0.95, top=0.15, bottom=0.85)
    ax = fig.add_subplot()
    if not runs:
        _empty(ax, "no run has committed anything yet")
        return _svg(fig)
    row = {inst: i for i, inst in enumerate(instances)}
    spans: dict[tuple[int, str], list[tuple[float, float]]] = defaultdict(list)
    for r in runs:
        a, b = (_dt.datetime.fromisoformat(r[k]) for k in ("started", "last_commit"))
        b = max(b, a + _dt.timedelta(seconds=30))  # a short run stays visible
        x0, x1 = mdates.date2num(a), mdates.date2num(b)
        spans[(r["instance"], r["outcome"])].append((x0, x1 - x0))
    for (inst, outcome), bars in spans.items():  # one collection per instance and outcome
        ax.broken_barh(
            bars,
            (row[inst] - 0.32, 0.64),
            facecolors=OUTCOME_COLORS[outcome],
            edgecolor="white",
            linewidth=1,
        )
    ax.set_yticks(range(len(instances)), [f"instance {i}" for i in instances])
    ax.set_ylim(-0.6, len(instances) - 0.4)
    ax.xaxis_date()
    _style(ax)
    ax.grid(axis="x", color=GRID, linewidth=0.8)
    ax.grid(axis="y", visible=False)
    from matplotlib.patches import Patch

    seen = [o for o in OUTCOME_COLORS if any(r["outcome"] == o for r in runs)]
    ax.legend(
        handles=[Patch(color=OUTCOME_COLORS[o], label=o) for o in seen],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.18),
        ncols=3,
        frameon=False,
        fontsize=9,
    )
    return _svg(fig)


def _edges(xs: list[_dt.datetime], width: _dt.timedelta) -> Any:
    import matplotlib.dates as mdates

    return mdates.date2num(xs + [xs[-1] + width])


def _legend_above(ax: Any) -> None:
    """The legend in one row above the plot, where it hides no data."""
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(
        handles,
        labels,
        loc="lower left",
        bbox_to_anchor=(0, 1.0),
        ncols=max(1, min(len(labels), 4)),
        frameon=False,
        fontsize=9,
        borderaxespad=0.2,
        handlelength=1.6,
        columnspacing=1.4,
    )


def _cumsum(v: list[float]) -> list[float]:
    out, acc = [], 0.0
    for x in v:
        acc += x
        out.append(acc)
    return out


def _thousands() -> Any:
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda x, _: f"{x:,.0f}")


def _duration(minutes: float) -> str:
    return f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"


CSS = """
:root{--ink:#1f2933;--muted:#6b7785;--line:#e4e7eb;--bg:#ffffff;--card:#f6f8fa}
*{box-sizing:border-box}body{margin:0;background:var(--bg);color:var(--ink);
font:14px/1.45 -apple-system,"Segoe UI",Roboto,"DejaVu Sans",Helvetica,Arial,sans-serif}
main{max-width:1060px;margin:0 auto;padding:28px 24px 48px}
h1{font-size:22px;margin:0 0 2px}h2{font-size:17px;margin:34px 0 4px}
.sub{color:var(--muted);margin:0 0 18px}.note{color:var(--muted);margin:2px 0 8px;font-size:13px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(100px,1fr));gap:10px}
.card{background:var(--card);border-radius:8px;padding:10px 14px}.card b{display:block;font-size:21px;white-space:nowrap}
.card span{color:var(--muted);font-size:12px}.bar{height:8px;background:var(--line);border-radius:4px;margin:14px 0 4px;overflow:hidden;display:flex}
.bar i{display:block;height:100%}figure{margin:6px 0 0}figure svg{width:100%;height:auto;display:block}
table{border-collapse:collapse;margin:8px 0;font-size:13px;width:100%}th,td{text-align:left;padding:4px 8px;border-bottom:1px solid var(--line)}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}details{margin:6px 0}summary{cursor:pointer;color:var(--muted)}
"""


def _table(rows: list[list[Any]], headers: list[str], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    head = "".join(
        f'<th class="n">{html.escape(h)}</th>' if i in numeric else f"<th>{html.escape(h)}</th>"
        for i, h in enumerate(headers)
    )
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{v:,}</td>'
            if i in numeric and isinstance(v, (int, float))
            else f"<td>{html.escape(str(v))}</td>"
            for i, v in enumerate(r)
        )
        + "</tr>"
        for r in rows
    )
    return (
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        if rows
        else '<p class="note">none</p>'
    )


def require_charts() -> None:
    """The html format's charting library, or a usage error saying how to install it."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None


def to_html(data: dict) -> str:
    """The page: headline figures, five charts (inline SVG), the figures behind them as tables."""
    require_charts()
    r = data["rate"]
    card_html, bar = _html_cards(data)
    state = (
        "running"
        if r["running"]
        else f"idle since {r['idle_since']} UTC"
        if r["idle_since"]
        else "nothing has run"
    )
    at_avg = (
        f" At the {AVERAGE_LABEL}, the remaining {r['remaining']:,} would take {_duration(r['minutes_at_average'])}."
        if r["minutes_at_average"]
        else ""
    )
    body = "".join(
        f'<section><h2>{html.escape(title)}</h2><p class="note">{html.escape(note)}</p>'
        f'<figure id="{fid}">{svg}</figure>'
        + (f"<details><summary>figures</summary>{table}</details>" if table else "")
        + "</section>"
        for title, fid, note, svg, table in _html_sections(data)
    )
    head = (
        f'<h1>xml-extractor report</h1><p class="sub">{html.escape(data["generated_at"] or "")} UTC · '
        f"{html.escape(data['dialect'])} · {html.escape(', '.join(data['contracts']))} · {html.escape(state)}."
        f"{html.escape(at_avg)}</p>"
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>xml-extractor report</title>'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<style>{CSS}</style></head><body><main>{head}<div class="cards">{card_html}</div>{bar}{body}'
        "</main></body></html>"
    )


def _html_cards(data: dict) -> tuple[str, str]:
    """The headline figures as cards, and the success/failed bar under them."""
    t, r = data["totals"], data["rate"]
    src = max(1, int(t.get("source_rows", 0)))
    ok, bad = int(t.get("success", 0)), int(t.get("failed", 0))
    cards = [
        ("source rows", f"{t.get('source_rows', 0):,}"),
        ("success", f"{ok:,}"),
        ("failed", f"{bad:,}"),
        ("pending", f"{t.get('pending', 0):,}"),
        ("done", f"{t.get('done_pct', 0)}%"),
        (r["rate_label"], f"{r['recent_per_min']:,.0f}/min"),
        (AVERAGE_LABEL, f"{r['average_per_min']:,.0f}/min"),
        (
            "ETA " + ETA_LABEL.format(rate=r["rate_label"]),
            _duration(r["eta_minutes"]) if r["eta_minutes"] is not None else r["eta"][4:],
        ),
    ]
    if t.get("reprocess_requested"):
        cards.insert(4, ("reprocess requested", f"{t['reprocess_requested']:,}"))
    card_html = "".join(
        f'<div class="card"><b>{html.escape(v)}</b><span>{html.escape(k)}</span></div>'
        for k, v in cards
    )
    bar = (
        f'<div class="bar" title="success / failed / pending"><i style="width:{100 * ok / src:.2f}%;background:{PALETTE[4]}"></i>'
        f'<i style="width:{100 * bad / src:.2f}%;background:{PALETTE[2]}"></i></div>'
    )
    return card_html, bar


def _html_sections(data: dict) -> list[tuple[str, str, str, str, str]]:
    """Each chart: title, figure id, note, SVG and the table of its figures."""
    r, fails = data["rate"], data["failures_final"]
    return [
        (
            "Applications done over time",
            "chart-done",
            "Results committed per instance, stacked, cumulative: each attempt's success or failure, the attempts a "
            "reprocess replaced included at their original time. "
            + (
                f"The dashed line goes on to the end at the {r['rate_label']}: {r['eta']}."
                if r["eta_minutes"] is not None
                else f"Idle: the dashed line goes on to the end at the {AVERAGE_LABEL}."
                if r["minutes_at_average"]
                else ""
            ),
            _chart_done(data),
            "",
        ),
        (
            "Rate",
            "chart-rate",
            f"Results per minute (bars), the {r['rate_label']} and the {AVERAGE_LABEL}. {r['definition']}",
            _chart_rate(data),
            "",
        ),
        (
            "Failures over time, by stage and class",
            "chart-failures",
            "Failed attempts (replaced ones included), stacked by stage: error class. The table lists the applications "
            "that have failed for good now (no success, no open reprocess request).",
            _chart_failures(data),
            _table(
                [[f["stage"], f["error_class"], f["count"]] for f in fails],
                ["stage", "error class", "applications"],
                {2},
            ),
        ),
        (
            "Data-quality events by kind, per contract",
            "chart-events",
            "Values the contract kept but changed, defaulted or dropped (see `quality` for the columns and examples).",
            _chart_events(data),
            _table(
                [
                    [e["contract"], e["table"], e["event_type"], e["events"], e["applications"]]
                    for e in data["events"]
                ],
                ["contract", "table", "kind", "events", "applications"],
                {3, 4},
            ),
        ),
        (
            "Runs and their outcomes",
            "chart-runs",
            "Each run (session) of each instance from its first start to its last commit, from run_progress.",
            _chart_runs(data),
            _html_runs_table(data["runs"]),
        ),
    ]


def _html_runs_table(runs: list[dict]) -> str:
    """The runs chart's figures: one row per run of an instance."""
    return _table([_runs_row(x, 12) for x in runs], RUNS_HEADERS, {5, 6, 7})


def report_data(db: Database) -> dict:
    """What `report` shows: :func:`gather`'s figures and every disputed con_id (disputes.py)."""
    from .disputes import disputed

    return {**gather(db), "disputes": disputed(db)}


_DISPUTES_TITLE = "Disputed con_ids"
_DISPUTES_NOTE = (
    "A con_id belongs to the application that committed it first; each application refused for "
    "it failed at insert (KeyCollision). Which one commits first depends on timing: decide, fix "
    "the documents, reprocess."
)
_DISPUTES_HEADERS = ["con_id", "kept by", "refused for", "refused at (UTC)"]


def _dispute_rows(data: dict) -> list[list[Any]]:
    return [
        [d["con_id"], str(d["kept_by"]), str(d["refused_app_id"]), str(d["first_refused_at"])]
        for d in data.get("disputes", [])
    ]


def render(data: dict, fmt: str) -> str:
    if fmt == "json":
        return to_json(data)
    if "disputes" not in data:
        return to_markdown(data) if fmt == "md" else to_html(data)
    rows = _dispute_rows(data)
    if fmt == "md":
        table = _md_table(rows, _DISPUTES_HEADERS)
        return (
            f"{to_markdown(data).rstrip()}\n\n## {_DISPUTES_TITLE}\n\n{_DISPUTES_NOTE}\n\n{table}\n"
        )
    section = (
        f'<section id="disputes"><h2>{_DISPUTES_TITLE} ({len(rows):,})</h2>'
        f'<p class="note">{html.escape(_DISPUTES_NOTE)}</p>'
        f"{_table(rows, _DISPUTES_HEADERS)}</section>"
    )
    return to_html(data).replace("</main></body>", section + "</main></body>", 1)
