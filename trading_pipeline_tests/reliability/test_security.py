"""Secrets and exposure: API keys and the webhook URL never reach logs, run config, metadata, alerts, files or
exception text; live trading without the opt-in refuses to start; the sim broker and the UI bind to 127.0.0.1."""

from __future__ import annotations

import io
import json
import logging
import re
import runpy
import signal
import socket
import subprocess
import sys
import threading
import traceback
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import dagster as dg
import pytest
import sqlalchemy as sa

from trading_pipeline.automation.sensors import run_failure_alert_sensor
from trading_pipeline.broker.alpaca import AlpacaBroker
from trading_pipeline.broker.base import BrokerError
from trading_pipeline.broker.retry import RetryPolicy
from trading_pipeline.cli.main import main as cli_main
from trading_pipeline.definitions import build_resources
from trading_pipeline.harness.demo import Demo, DemoOptions
from trading_pipeline.resources.alert_delivery import AlertDispatcher
from trading_pipeline.settings import Settings, SettingsError
from trading_pipeline.store.database import Database
from trading_pipeline.store.migrate import upgrade
from trading_pipeline.store.models import Base
from trading_pipeline_tests.sim_fixtures import running_sim

pytestmark = pytest.mark.reliability

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "PKRELIABILITY7Q3XKEYID"
SECRET_KEY = "rel1abil1tyS3cretVALUE9zq8"
HOOK_TOKEN = "T0KEN-hook-5ecret-8d1f"
APPRISE_TOKEN = "apPr1se-b0t-T0KEN-77c3"  # what a tgram://<bot token>/… or ntfy topic URL carries


# ---- a webhook receiver ---------------------------------------------------------------------------------


class Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[bytes]] = []
    status: ClassVar[int] = 200

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).received.append(bytes(self.requestline, "latin-1") + b"\n" + bytes(self.headers) + body)
        self.send_response(type(self).status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[ThreadingHTTPServer]:
    Receiver.received = []
    Receiver.status = 200
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def hook_url(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/hooks/{HOOK_TOKEN}"


class Capture(logging.Handler):
    """Log records with everything they carry (message, args, extra, traceback): every record of the product
    and of Dagster at any level, and every other library's at INFO and above. Third-party DEBUG output is kept
    apart in `debug_texts`: urllib3 logs each request line there (see the xfail below)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []
        self.debug_texts: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record) + " " + repr(getattr(record, "__dict__", {}))
        ours = record.name.startswith(("trading_pipeline", "dagster"))
        (self.texts if ours or record.levelno >= logging.INFO else self.debug_texts).append(text)


@pytest.fixture
def captured_logs() -> Iterator[Capture]:
    handler = Capture()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def leaks(secrets: list[str], texts: dict[str, bytes | str]) -> list[str]:
    found = []
    for where, text in texts.items():
        data = text if isinstance(text, bytes) else text.encode("utf-8", "replace")
        found += [f"{secret[:6]}… in {where}" for secret in secrets if secret.encode() in data]
    return found


def all_rows(db_path: Path) -> str:
    with Database(f"sqlite:///{db_path}") as db, db.engine.connect() as conn:
        return "\n".join(
            repr(row) for table in Base.metadata.sorted_tables for row in conn.execute(sa.select(table)).all()
        )


# ---- keys through a whole demo -----------------------------------------------------------------------


class ProductionWiredDemo(Demo):
    """The demo, but with the production resource builder: keys from the environment as EnvVar, the webhook
    from TRADING_PIPELINE_ALERT_WEBHOOK_URL; the first scheduled stop-loss run meets a broker outage."""

    def __init__(self, *args: Any, env: pytest.MonkeyPatch, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.env = env
        self.failed_once = False

    def resources(self, db_url: str, sim_url: str) -> dict[str, dg.ConfigurableResource]:
        for name, value in {"ALPACA_TRADING_URL": sim_url, "ALPACA_DATA_URL": sim_url, "DATABASE_URL": db_url}.items():
            self.env.setenv(name, value)
        return build_resources(Settings.from_env())

    def execute(self, job: dg.JobDefinition, instance: dg.DagsterInstance, number: int, total: int, **kw: Any) -> None:
        if not self.failed_once and not kw.get("trigger"):
            self.failed_once = True  # every quote request of this run fails: the run fails, with its error text
            self._sim.faults.fail_next("500", count=4, route="GET /v2/stocks/quotes/latest")
        super().execute(job, instance, number, total, **kw)


def test_api_keys_and_webhook_url_never_leak_from_a_demo_run(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    receiver: ThreadingHTTPServer,
    captured_logs: Capture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    url = hook_url(receiver)
    for name, value in {
        "TRADING_PIPELINE_BROKER": "alpaca",
        "TRADING_MODE": "paper",
        "ALPACA_API_KEY": API_KEY,
        "ALPACA_SECRET_KEY": SECRET_KEY,
        "TRADING_PIPELINE_ALERT_WEBHOOK_URL": url,
        "TRADING_PIPELINE_APPRISE_URLS": f"json://127.0.0.1:{receiver.server_address[1]}/apprise/{APPRISE_TOKEN}",
    }.items():
        monkeypatch.setenv(name, value)
    out = io.StringIO()
    demo = ProductionWiredDemo(
        DemoOptions(data_dir=tmp_path, minutes=4, n_symbols=150, sample_size=40, max_positions=4), out, env=monkeypatch
    )
    report = demo.run()

    # The failed run reaches people through the failure sensor: alerts table, log and webhook.
    failed = [o for o in demo.outcomes if not o.success]
    assert len(failed) == 1 and "quotes" in failed[0].error
    instance = dg.DagsterInstance.from_config(str(report.dagster_home))
    try:
        run = next(r for r in instance.get_runs() if r.status == dg.DagsterRunStatus.FAILURE)
        failure = next(
            e.get_dagster_event()
            for e in instance.all_logs(run.run_id)
            if e.is_dagster_event and e.get_dagster_event().event_type_value == "PIPELINE_FAILURE"
        )
        with dg.build_run_status_sensor_context(
            sensor_name="run_failure_alert_sensor",
            dagster_event=failure,
            dagster_instance=instance,
            dagster_run=run,
            resources={"alerts": demo._resources["alerts"], "database": demo._resources["database"]},
        ) as context:
            run_failure_alert_sensor(context.for_run_failure())
        with dg.build_resources({k: v for k, v in demo._resources.items()}) as live:
            resource_reprs = f"{live.broker!r} {live.alerts!r} {live.broker} {live.alerts}"
    finally:
        instance.dispose()

    # An exception raised with the keys loaded: the broker unreachable.
    closed_port = AlpacaBroker.from_settings(
        Settings.from_env({"ALPACA_TRADING_URL": "http://127.0.0.1:9", "ALPACA_DATA_URL": "http://127.0.0.1:9"}),
        timeout=0.5,
        retry=RetryPolicy(max_attempts=1),
    )
    with pytest.raises(BrokerError) as raised:
        closed_port.clock()
    exception_text = "".join(traceback.format_exception(raised.value)) + repr(raised.value) + repr(closed_port)

    std = capfd.readouterr()
    files = {str(p.relative_to(tmp_path)): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    texts: dict[str, bytes | str] = {
        "demo output": out.getvalue(),
        "stdout/stderr": std.out + std.err,
        "log records": "\n".join(captured_logs.texts),
        "alerts and every other trading-DB row": all_rows(report.database_path),
        "resolved resource reprs": resource_reprs,
        "exception": exception_text,
        "webhook deliveries": b"\n".join(Receiver.received),
        **files,
    }
    # The scan sees what it should: keys were in use, the event log (with the failed run's error) is in the files.
    assert demo._sim.requests("GET /v2/clock") > 0 and report.positions_opened > 0
    assert any(run.run_id.encode() in data and b"broker unavailable" in data for data in files.values())
    assert Receiver.received and "run failed" in all_rows(report.database_path)
    assert any("trading_pipeline" in text for text in captured_logs.texts)

    assert leaks([API_KEY, SECRET_KEY], texts) == []
    assert any(APPRISE_TOKEN.encode() in request for request in Receiver.received)  # Apprise delivered too
    texts.pop("webhook deliveries")  # the one place the webhook and Apprise URLs belong is the request to them
    assert leaks([HOOK_TOKEN, APPRISE_TOKEN], texts) == []


def test_resolved_resources_do_not_show_secrets_in_their_repr(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'trading.db'}"
    with Database(url) as db:
        upgrade(db)
    for name, value in {
        "DATABASE_URL": url,
        "TRADING_PIPELINE_BROKER": "alpaca",
        "ALPACA_API_KEY": API_KEY,
        "ALPACA_SECRET_KEY": SECRET_KEY,
        "TRADING_PIPELINE_ALERT_WEBHOOK_URL": f"https://hooks.example/{HOOK_TOKEN}",
        "TRADING_PIPELINE_SLACK_TOKEN": f"xoxb-{HOOK_TOKEN}",
        "TRADING_PIPELINE_SLACK_CHANNEL": "#alerts",
        "TRADING_PIPELINE_APPRISE_URLS": f"tgram://{APPRISE_TOKEN}/12345, ntfys://ntfy.sh/{APPRISE_TOKEN}",
    }.items():
        monkeypatch.setenv(name, value)
    with dg.build_resources(build_resources(Settings.from_env())) as live:
        assert live.broker.api_key == API_KEY and HOOK_TOKEN in live.alerts.webhook_url  # resolved, usable …
        assert APPRISE_TOKEN in live.alerts.apprise_urls
        dispatcher = live.alerts.dispatcher(None)
        shown = " ".join(f"{resource!r} {resource}" for resource in (live.broker, live.alerts, live.database))
        shown += f" {dispatcher!r} {live.alerts.channels()!r} {dispatcher.channel_names}"
    assert leaks([API_KEY, SECRET_KEY, HOOK_TOKEN, APPRISE_TOKEN], {"repr": shown}) == []  # … and never shown


@pytest.mark.parametrize("status", [200, 500, "refused"])
def test_the_webhook_url_is_never_logged_or_stored(
    db: Database, receiver: ThreadingHTTPServer, captured_logs: Capture, status: int | str
) -> None:
    url = hook_url(receiver)
    if status == "refused":
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{probe.getsockname()[1]}/hooks/{HOOK_TOKEN}"  # nobody listens there
    else:
        Receiver.status = status
    dispatcher = AlertDispatcher(db, webhook_url=url, sleep=lambda seconds: None, webhook_timeout=2.0)
    outcome = dispatcher.fire("reliability:webhook", "webhook test", "a message", details={"n": 1})
    resolved = dispatcher.resolve("reliability:webhook")
    assert outcome.deliveries["webhook"] == ("ok" if status == 200 else outcome.deliveries["webhook"])
    if status != 200:
        assert outcome.deliveries["webhook"].startswith("failed")
    with db.engine.connect() as conn:
        rows = "\n".join(repr(r) for t in Base.metadata.sorted_tables for r in conn.execute(sa.select(t)).all())
    texts = {
        "log records": "\n".join(captured_logs.texts),
        "DB rows": rows,
        "deliveries": json.dumps([outcome.deliveries, resolved and resolved.deliveries]),
        "repr": repr(dispatcher),
    }
    assert "webhook" in rows  # the delivery outcome is recorded …
    assert leaks([HOOK_TOKEN], texts) == []  # … without the URL


def test_the_webhook_url_stays_out_of_debug_logs_too(
    db: Database, receiver: ThreadingHTTPServer, captured_logs: Capture
) -> None:
    AlertDispatcher(db, webhook_url=hook_url(receiver), sleep=lambda seconds: None).fire("k", "title", "message")
    assert Receiver.received
    assert leaks([HOOK_TOKEN], {"third-party debug logs": "\n".join(captured_logs.debug_texts)}) == []


@pytest.mark.parametrize("status", [200, 404, "refused", "unparseable"])
def test_apprise_urls_are_never_logged_or_stored(
    db: Database, receiver: ThreadingHTTPServer, captured_logs: Capture, status: int | str
) -> None:
    """Apprise logs the URLs it loads (DEBUG) and the ones it cannot parse (ERROR), and urllib3 each request
    line: the token must be in none of them, nor in the alerts table, the outcome or a repr."""
    url = f"json://127.0.0.1:{receiver.server_address[1]}/apprise/{APPRISE_TOKEN}"
    if status == "refused":
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            url = f"json://127.0.0.1:{probe.getsockname()[1]}/apprise/{APPRISE_TOKEN}"
    elif status == "unparseable":
        url = f"bogus://{APPRISE_TOKEN}"  # Apprise logs "Unparseable URL bogus://…" at ERROR
    else:
        Receiver.status = status
    dispatcher = AlertDispatcher(db, apprise_urls=[url], sleep=lambda seconds: None)
    outcome = dispatcher.fire("reliability:apprise", "apprise test", "a message")
    resolved = dispatcher.resolve("reliability:apprise")
    channel = next(name for name in outcome.deliveries if name.startswith("apprise:"))
    assert (outcome.deliveries[channel] == "ok") is (status == 200)
    with db.engine.connect() as conn:
        rows = "\n".join(repr(r) for t in Base.metadata.sorted_tables for r in conn.execute(sa.select(t)).all())
    texts = {
        "log records": "\n".join(captured_logs.texts),
        "third-party debug logs": "\n".join(captured_logs.debug_texts),
        "DB rows": rows,
        "deliveries": json.dumps([outcome.deliveries, resolved and resolved.deliveries]),
        "repr": repr(dispatcher),
    }
    assert channel in rows  # the delivery outcome is recorded …
    assert leaks([APPRISE_TOKEN], texts) == []  # … without the URL


# ---- live trading needs the opt-in ----------------------------------------------------------------------


@pytest.mark.parametrize("command", [["preflight"], ["demo", "--minutes", "2"], ["db", "upgrade"], ["watchdog"]])
def test_live_mode_without_the_opt_in_refuses_to_start_the_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, command: list[str]
) -> None:
    monkeypatch.setenv("TRADING_MODE", "live")
    monkeypatch.delenv("TRADING_LIVE_CONFIRM", raising=False)
    monkeypatch.setenv("TRADING_PIPELINE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'never.db'}")
    assert cli_main(command) == 2
    assert "TRADING_LIVE_CONFIRM" in capsys.readouterr().err
    assert not (tmp_path / "never.db").exists() and not (tmp_path / "demo").exists()  # nothing started


@pytest.mark.filterwarnings("ignore:.*found in sys.modules after import of package:RuntimeWarning")  # runpy re-runs it
@pytest.mark.parametrize("confirm", [None, "yes", "YES-REAL-MONEY", " yes-real-money"])
def test_live_mode_without_the_exact_opt_in_refuses_to_load_the_definitions(
    monkeypatch: pytest.MonkeyPatch, confirm: str | None
) -> None:
    monkeypatch.setenv("TRADING_MODE", "live")
    monkeypatch.setenv("TRADING_PIPELINE_BROKER", "alpaca")
    monkeypatch.setenv("ALPACA_API_KEY", API_KEY)
    monkeypatch.setenv("ALPACA_SECRET_KEY", SECRET_KEY)
    if confirm is None:
        monkeypatch.delenv("TRADING_LIVE_CONFIRM", raising=False)
    else:
        monkeypatch.setenv("TRADING_LIVE_CONFIRM", confirm)
    with pytest.raises(SettingsError, match="TRADING_LIVE_CONFIRM") as refused:
        runpy.run_module("trading_pipeline.definitions")  # what `dagster dev` / `dg` load
    assert API_KEY not in str(refused.value) and SECRET_KEY not in str(refused.value)


@pytest.mark.filterwarnings("ignore:.*found in sys.modules after import of package:RuntimeWarning")  # runpy re-runs it
def test_live_mode_with_the_opt_in_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADING_MODE", "live")
    monkeypatch.setenv("TRADING_LIVE_CONFIRM", "yes-real-money")
    monkeypatch.setenv("TRADING_PIPELINE_BROKER", "alpaca")
    monkeypatch.setenv("ALPACA_API_KEY", API_KEY)
    monkeypatch.setenv("ALPACA_SECRET_KEY", SECRET_KEY)
    defs = runpy.run_module("trading_pipeline.definitions")["defs"]
    assert defs.resolve_job_def("stop_loss_job") is not None


# ---- loopback only --------------------------------------------------------------------------------------


def non_loopback_addresses() -> list[str]:
    addresses = set()
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            addresses.add(info[4][0])
    except OSError:
        pass
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outbound interface
            addresses.add(probe.getsockname()[0])
        except OSError:
            pass
    return sorted(a for a in addresses if not a.startswith("127.") and a != "0.0.0.0")


def refuses(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1.0):
            return False
    except OSError:
        return True


def test_the_sim_broker_listens_on_loopback_only() -> None:
    with running_sim(realtime=False, n_symbols=50) as sim:
        assert sim.url.startswith("http://127.0.0.1:")
        assert all(refuses(address, sim.port) for address in non_loopback_addresses())


def test_the_sim_broker_command_listens_on_loopback_only() -> None:
    command = [sys.executable, "-m", "trading_pipeline.cli", "sim-broker", "--port", "0", "--symbols", "60"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        found = re.search(r"on http://([\d.]+):(\d+)", first)
        assert found is not None, first + (process.stderr.read() if process.poll() is not None else "")
        host, port = found.group(1), int(found.group(2))
        assert host == "127.0.0.1"
        assert not refuses("127.0.0.1", port)
        assert all(refuses(address, port) for address in non_loopback_addresses())
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def command_lines(path: Path) -> list[str]:
    """Lines that are commands: fenced code blocks of a Markdown file, ExecStart of a unit, f-strings in code."""
    text = path.read_text()
    if path.suffix == ".md":
        return [line for block in re.findall(r"```[^\n]*\n(.*?)```", text, re.S) for line in block.splitlines()]
    if path.suffix == ".service":
        return [line for line in text.splitlines() if line.startswith("ExecStart=")]
    return [line for line in text.splitlines() if re.search(r'f"[^"]*dagster dev', line)]


def test_every_ui_instruction_binds_to_loopback() -> None:
    files = [
        ROOT / "README.md",
        *sorted((ROOT / "deploy").rglob("*.service")),
        ROOT / "trading_pipeline/harness/demo_report.py",
    ]
    lines = [
        (str(path.relative_to(ROOT)), line)
        for path in files
        for line in command_lines(path)
        if re.search(r"\bdagster dev\b|dagster-webserver\b|\bdg dev\b", line)
    ]
    assert len(lines) >= 3  # the README's, the systemd unit's and the demo's instructions
    unbound = [(where, line) for where, line in lines if not re.search(r"(-h|--host)\s+127\.0\.0\.1", line)]
    assert unbound == []
    assert "0.0.0.0" not in "".join(line for _, line in lines)
