"""The soak's verdict: the invariants judged from the DB and the broker's book, as one table."""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_CLOSE_DELAY_RUNS = 2


@dataclass
class SoakReport:
    minutes: int
    fault_rate: float
    seed: int
    database: str
    runs: int = 0
    failed_runs: int = 0
    settle_runs: int = 0
    requests: int = 0
    faults_injected: int = 0
    faults_by_kind: dict[str, int] = field(default_factory=dict)
    positions_opened: int = 0
    crossings: int = 0
    closes: int = 0
    closes_by_reason: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    lost: int = 0
    healed_before_close: int = 0
    max_close_delay_runs: int = 0
    closing_left: int = 0
    reconcile_mismatch_runs: int = 0
    reconciliation_clean: bool = True
    checkouts_during_broker_calls: int = 0
    wall_seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    # Runs whose reconciliation or sweep failed through every retry (an outage): the run fails and alerts, as it
    # should; the verdict judges what followed (missed stops, delays), not the failure itself.
    outage_failures: list[str] = field(default_factory=list)
    closes_reported_by_sweeps: int = 0  # progress only; `closes` is judged from the DB at the end
    close_delays: dict[str, int] = field(default_factory=dict)  # trade id → runs from cross to close
    outside_orders: int = 0  # orders the script placed "in the web app", holding a position's shares
    drifts: int = 0  # positions the script shrank behind the pipeline's back
    outages: int = 0  # one endpoint failing through a whole run's retries
    partial_fills: int = 0  # closes (or entries) that filled in part and were split by the pipeline
    oversells: int = 0  # more sold than bought, or a short: must stay 0
    divergences_unreported: int = 0  # a drift the reconciliation did not report: must stay 0
    outside_buys: int = 0  # positions the script bought outside the pipeline (adopted)
    listing_faults: int = 0  # runs whose positions listing answered empty or another account's book
    renames: int = 0  # held symbols renamed at the broker before the corporate action was published
    adopted: int = 0  # outside positions the pipeline adopted (and protects)
    write_offs_without_evidence: int = 0  # trades closed with no fill at the broker: must stay 0
    unprotected: int = 0  # broker shares with no open trade protecting them at the end: must stay 0

    @property
    def ok(self) -> bool:
        return (
            self.duplicates == 0
            and self.lost == 0
            and self.oversells == 0
            and self.divergences_unreported == 0
            and self.write_offs_without_evidence == 0
            and self.unprotected == 0
            and self.max_close_delay_runs <= MAX_CLOSE_DELAY_RUNS
            and self.closing_left == 0
            and self.reconciliation_clean
            and self.reconcile_mismatch_runs == 0
            and self.checkouts_during_broker_calls == 0
        )


def render_report(report: SoakReport) -> str:
    kinds = ", ".join(f"{kind} {n}" for kind, n in report.faults_by_kind.items()) or "none"
    reasons = ", ".join(f"{reason} {n}" for reason, n in report.closes_by_reason.items()) or "none"
    rows = [
        ("runs", f"{report.runs} (+{report.settle_runs} settle runs without faults); {report.failed_runs} failed"),
        ("broker requests", str(report.requests)),
        (
            "faults injected",
            f"{report.faults_injected} ({report.faults_injected / max(1, report.requests):.0%}): {kinds}",
        ),
        ("positions opened", str(report.positions_opened)),
        ("crossings observed", str(report.crossings)),
        ("closes", f"{report.closes} ({reasons})"),
        (
            "book faults",
            f"{report.outside_orders} outside orders, {report.drifts} drifts, {report.outages} endpoint outages, "
            f"{report.partial_fills} partly filled closes split, {report.outside_buys} outside buys "
            f"({report.adopted} adopted), {report.renames} renames, {report.listing_faults} empty or foreign listings",
        ),
        ("steps failed by outages", f"{len(report.outage_failures)} (each a failed run and an alert, as designed)"),
        ("duplicates", str(report.duplicates)),
        ("lost (missed stops)", str(report.lost)),
        ("oversells", str(report.oversells)),
        ("divergences unreported", str(report.divergences_unreported)),
        ("write-offs without evidence", str(report.write_offs_without_evidence)),
        ("shares left unprotected", str(report.unprotected)),
        ("max close delay", f"{report.max_close_delay_runs} runs (limit {MAX_CLOSE_DELAY_RUNS})"),
        ("healed before judged", str(report.healed_before_close)),
        ("closing rows left", str(report.closing_left)),
        (
            "reconciliation",
            "clean"
            if report.reconciliation_clean and not report.reconcile_mismatch_runs
            else f"MISMATCH ({report.reconcile_mismatch_runs} runs)",
        ),
        ("connections held in broker calls", str(report.checkouts_during_broker_calls)),
        ("wall time", f"{report.wall_seconds:.1f} s"),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [
        f"== soak: {report.minutes} simulated minutes, fault rate {report.fault_rate:.0%}, seed {report.seed}, "
        f"DB {report.database} ==",
        *(f"{name:<{width}}  {value}" for name, value in rows),
        f"verdict{' ' * (width - 7)}  {'PASS' if report.ok else 'FAIL'}",
    ]
    if report.problems and not report.ok:
        lines.append("problems:")
        lines.extend(f"  - {problem}" for problem in report.problems[:30])
    return "\n".join(lines)
