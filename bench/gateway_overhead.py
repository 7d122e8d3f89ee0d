"""What the gateway adds to a request, beside other proxies, in one run.

An nginx upstream answers a static chat completion (it is not the bottleneck); wrk is the load
generator. The proxy under test is pinned to core 0; nginx and wrk share core 1. For each
target (the upstream directly, stillwatch with auth, limits, the decision hook and telemetry
on, the LiteLLM proxy in its own venv with one worker, and unmimic) it measures latency at one
connection (p50, p99) and requests/s at saturation, and prints the figures and their ratios.

    python bench/gateway_overhead.py               # everything (installs what it needs)
    python bench/gateway_overhead.py --only stillwatch --duration 5

Needs nginx, wrk and taskset (Debian: nginx-light, wrk, util-linux); installs them with
apt-get when run as root. LiteLLM 1.106.2 and unmimic 0.1.0 are installed into their own
venvs under bench/.cache on first use.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
RESULTS = HERE / "results"
LITELLM = "litellm[proxy]==1.106.2"
UNMIMIC = "unmimic==0.1.0"

REPLY = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "mock-small",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "A fixed answer."},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16},
    }
)
BODY = json.dumps(
    {
        "model": "mock-small",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
    }
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def need_tools() -> None:
    missing = [t for t in ("wrk", "taskset") if shutil.which(t) is None]
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        missing.append("nginx")
    if not missing:
        return
    if os.geteuid() == 0:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "nginx-light", "wrk", "util-linux"],
            check=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    else:
        sys.exit(f"install {', '.join(missing)} (Debian: nginx-light wrk util-linux)")


def venv_with(name: str, requirement: str) -> Path:
    """A venv of its own for a competitor, so its dependencies never meet ours."""
    venv = CACHE / "venvs" / name
    stamp = venv / ".installed"
    if not stamp.exists() or stamp.read_text() != requirement:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", requirement], check=True)
        stamp.write_text(requirement)
    return venv / "bin"


def wait_up(url: str, proc: subprocess.Popen, timeout: float = 120, key: str = "sk-bench") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {proc.returncode}")
        try:
            req = urllib.request.Request(
                url,
                data=BODY.encode(),
                headers={"Content-Type": "application/json", "Authorization": "Bearer " + key},
            )
            with urllib.request.urlopen(req, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.25)
    raise RuntimeError(f"{url} did not answer in {timeout}s")


@dataclass
class Result:
    target: str
    p50_ms: float
    p99_ms: float
    rps: float
    errors: int
    cpu_us_per_request: float | None = None
    added_p50_ms: float | None = None
    added_p99_ms: float | None = None


def _ms(value: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", value)
    if not m:
        raise ValueError(value)
    n, unit = float(m[1]), m[2]
    return n / 1000 if unit == "us" else n * 1000 if unit == "s" else n


def wrk(url: str, connections: int, duration: int, script: Path) -> tuple[float, float, float, int]:
    cmd = [
        "taskset",
        "-c",
        "1",
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{duration}s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M)[1])
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M)[1])
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])
    errors = 0
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if m:
        errors += int(m[1])
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    return p50, p99, rps, errors


def lua_for(tmp: Path, name: str, key: str) -> Path:
    script = tmp / f"post-{name}.lua"
    script.write_text(_lua(key))
    return script


Started = tuple[subprocess.Popen, str, str]  # process, base URL, API key to send


def start_nginx(tmp: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    reply = REPLY.replace("'", "\\'")
    conf = tmp / "nginx.conf"
    conf.write_text(f"""
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location / {{
      default_type application/json;
      return 200 '{reply}';
    }}
  }}
}}
""")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    proc = subprocess.Popen(["taskset", "-c", "1", nginx, "-c", str(conf), "-p", str(tmp)])
    url = f"http://127.0.0.1:{port}"
    wait_up(url + "/v1/chat/completions", proc)
    return proc, url


def start_stillwatch(tmp: Path, upstream: str, detector: str = "distillation") -> Started:
    """Every layer on: all six limit dimensions on requests and tokens, the detector (the
    distillation detector by default; `null` for the variant without it), telemetry to the
    embedded database. Limits are high so that nothing is refused."""
    port = free_port()
    policy = tmp / f"policy-{detector}.yaml"
    policy.write_text(f'detector: "{detector}"\n' + """
tiers:
  default:
    key:      {requests: 100000000/min, tokens: 100000000000/min}
    account:  {requests: 100000000/min, tokens: 100000000000/min}
    org:      {requests: 100000000/min, tokens: 100000000000/min}
    end_user: {requests: 100000000/min, tokens: 100000000000/min}
    ip:       {requests: 100000000/min}
    subnet:   {requests: 100000000/min}
""")
    data = tmp / f"stillwatch-{detector}"
    shutil.rmtree(data, ignore_errors=True)
    env = {**os.environ, "STILLWATCH_DATA_DIR": str(data)}
    subprocess.run(
        [sys.executable, "-m", "stillwatch", "accounts", "create", "bench", "--org", "bench-org"],
        check=True,
        env=env,
        capture_output=True,
    )
    out = subprocess.run(
        [sys.executable, "-m", "stillwatch", "keys", "create", "bench"],
        check=True,
        env=env,
        capture_output=True,
        text=True,
    ).stdout
    key = re.search(r"key:\s+(\S+)", out)[1]
    proc = subprocess.Popen(
        [
            "taskset",
            "-c",
            "0",
            sys.executable,
            "-m",
            "stillwatch",
            "serve",
            "--port",
            str(port),
            "--upstream",
            upstream,
            "--policy",
            str(policy),
        ],
        env=env,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    wait_up(url + "/v1/chat/completions", proc, key=key)
    return proc, url, key


def start_litellm(tmp: Path, upstream: str) -> Started:
    bin_dir = venv_with("litellm", LITELLM)
    port = free_port()
    cfg = tmp / "litellm.yaml"
    cfg.write_text(f"""
model_list:
  - model_name: mock-small
    litellm_params:
      model: openai/mock-small
      api_base: {upstream}/v1
      api_key: sk-upstream
litellm_settings:
  telemetry: false
""")
    key = "sk-" + os.urandom(32).hex()  # it refuses to start unauthenticated
    env = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_TELEMETRY": "False",
        "LITELLM_LOG": "ERROR",
        "LITELLM_MASTER_KEY": key,
    }
    proc = subprocess.Popen(
        [
            "taskset",
            "-c",
            "0",
            str(bin_dir / "litellm"),
            "--config",
            str(cfg),
            "--port",
            str(port),
            "--num_workers",
            "1",
        ],
        env=env,
        cwd=tmp,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    wait_up(url + "/v1/chat/completions", proc, timeout=240, key=key)
    return proc, url, key


def start_unmimic(tmp: Path, upstream: str) -> Started:
    bin_dir = venv_with("unmimic", UNMIMIC)
    port = free_port()
    work = tmp / "unmimic"
    work.mkdir(exist_ok=True)
    env = {**os.environ, "UNMIMIC_UPSTREAM_URL": f"{upstream}/v1"}
    proc = subprocess.Popen(  # own process group: paused and resumed as one
        ["taskset", "-c", "0", str(bin_dir / "unmimic"), "serve", "--port", str(port)],
        env=env,
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    wait_up(url + "/v1/chat/completions", proc)
    return proc, url, "sk-bench"


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    own_group = os.getpgid(proc.pid) == proc.pid
    if own_group:
        os.killpg(proc.pid, signal.SIGTERM)
    else:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        if own_group:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.kill()


def start_floor(tmp: Path, upstream: str) -> Started:
    """A no-op ASGI app under the same uvicorn and pinning: what any Python server on core 0
    costs on this machine before it does anything (it answers without calling the upstream)."""
    port = free_port()
    app = tmp / "floor_app.py"
    app.write_text(
        "BODY = " + repr(REPLY.encode()) + "\n"
        "async def app(scope, receive, send):\n"
        "    if scope['type'] != 'http':\n"
        "        return\n"
        "    await receive()\n"
        "    await send({'type': 'http.response.start', 'status': 200,\n"
        "                'headers': [(b'content-type', b'application/json')]})\n"
        "    await send({'type': 'http.response.body', 'body': BODY})\n"
    )
    proc = subprocess.Popen(
        [
            "taskset",
            "-c",
            "0",
            sys.executable,
            "-m",
            "uvicorn",
            "floor_app:app",
            "--port",
            str(port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=tmp,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    wait_up(url + "/v1/chat/completions", proc)
    return proc, url, "sk-bench"


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and all its descendants, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    stats: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
        stats[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += stats.get(p, 0.0)
        todo.extend(children.get(p, []))
    return total


def exclusive(procs: dict[str, subprocess.Popen], name: str | None) -> None:
    """Core 0 to one proxy alone: the others are paused (SIGSTOP) while it is measured, so an
    idle competitor's background work never lands in another's figures. None resumes all."""
    for other, proc in procs.items():
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGCONT if name in (None, other) else signal.SIGSTOP)
    time.sleep(0.3)


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=int, default=4, help="seconds per measurement")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds; medians reported")
    ap.add_argument("--connections", type=int, default=64, help="connections at saturation")
    ap.add_argument(
        "--only",
        nargs="*",
        default=None,
        help="targets: floor stillwatch stillwatch-nodetect litellm unmimic (upstream always "
        "runs)",
    )
    args = ap.parse_args()
    need_tools()
    targets = args.only or ["floor", "stillwatch", "stillwatch-nodetect", "litellm", "unmimic"]
    starters = {
        "floor": start_floor,
        "stillwatch": start_stillwatch,
        "stillwatch-nodetect": lambda tmp, up: start_stillwatch(tmp, up, detector="null"),
        "litellm": start_litellm,
        "unmimic": start_unmimic,
    }
    latency: dict[str, list[tuple[float, float, int]]] = {}
    throughput: dict[str, list[tuple[float, int, float | None]]] = {}
    with tempfile.TemporaryDirectory(prefix="sw-bench-") as tmpdir:
        tmp = Path(tmpdir)
        nginx, upstream = start_nginx(tmp)
        live: dict[str, tuple[str, Path]] = {
            "upstream": (upstream, lua_for(tmp, "upstream", "sk-bench"))
        }
        by_name: dict[str, subprocess.Popen] = {}
        procs = []
        try:
            for name in targets:
                try:
                    proc, url, key = starters[name](tmp, upstream)
                except Exception as exc:  # report and go on with the others
                    print(f"  {name:<12} could not be started: {exc}", flush=True)
                    continue
                procs.append(proc)
                by_name[name] = proc
                live[name] = (url, lua_for(tmp, name, key))
            print(
                f"upstream nginx {upstream}; {', '.join(live)} up; proxies on core 0, nginx "
                f"and wrk on core 1; {args.rounds} interleaved rounds of {args.duration}s"
            )
            for name, (url, script) in live.items():  # warm up
                exclusive(by_name, name)
                wrk(url + "/v1/chat/completions", 4, 2, script)
            for rnd in range(1, args.rounds + 1):
                for name, (url, script) in live.items():
                    exclusive(by_name, name)
                    p50, p99, _, err = wrk(url + "/v1/chat/completions", 1, args.duration, script)
                    latency.setdefault(name, []).append((p50, p99, err))
                    print(
                        f"  round {rnd} {name:<11} 1 conn: p50 {p50:7.3f} ms  p99 {p99:7.3f} ms",
                        flush=True,
                    )
            for rnd in range(1, args.rounds + 1):
                for name, (url, script) in live.items():
                    exclusive(by_name, name)
                    proc = by_name.get(name)
                    cpu0 = cpu_seconds(proc.pid) if proc else 0.0
                    _, _, rps, err = wrk(
                        url + "/v1/chat/completions", args.connections, args.duration, script
                    )
                    cpu = (cpu_seconds(proc.pid) - cpu0) if proc else 0.0
                    per_req = cpu / max(rps * args.duration, 1) * 1e6 if proc else None
                    throughput.setdefault(name, []).append((rps, err, per_req))
                    print(
                        f"  round {rnd} {name:<11} {args.connections} conn: {rps:9.0f} req/s",
                        flush=True,
                    )
        finally:
            exclusive(by_name, None)
            for proc in procs:
                stop(proc)
            stop(nginx)
    results = []
    for name in latency:
        lat, thr = latency[name], throughput.get(name, [(0.0, 0, None)])
        cpus = [x[2] for x in thr if x[2] is not None]
        results.append(
            Result(
                name,
                median([x[0] for x in lat]),
                median([x[1] for x in lat]),
                median([x[0] for x in thr]),
                sum(x[2] for x in lat) + sum(x[1] for x in thr),
                median(cpus) if cpus else None,
            )
        )
    base = results[0]
    for r in results[1:]:
        r.added_p50_ms = r.p50_ms - base.p50_ms
        r.added_p99_ms = r.p99_ms - base.p99_ms
    report(results, args)


def _lua(key: str) -> str:
    body = BODY.replace("\\", "\\\\").replace('"', '\\"')
    return (
        f'wrk.method = "POST"\nwrk.body = "{body}"\n'
        f'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {key}"\n'
    )


def report(results: list[Result], args: argparse.Namespace) -> None:
    by = {r.target: r for r in results}
    sw = by.get("stillwatch")
    print(
        f"\nmedians of {args.rounds} rounds, {args.duration}s each, {args.connections} "
        "connections at saturation"
    )
    print(
        "\n| target | p50 ms | p99 ms | added p50 ms | added p99 ms | req/s (1 core) "
        "| CPU µs/request | errors |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        added50 = "" if r.added_p50_ms is None else f"{r.added_p50_ms:.3f}"
        added99 = "" if r.added_p99_ms is None else f"{r.added_p99_ms:.3f}"
        cpu = "" if r.cpu_us_per_request is None else f"{r.cpu_us_per_request:.0f}"
        print(
            f"| {r.target} | {r.p50_ms:.3f} | {r.p99_ms:.3f} | {added50} | {added99} |"
            f" {r.rps:.0f} | {cpu} | {r.errors} |"
        )
    ratios = {}
    off = by.get("stillwatch-nodetect")
    if sw is not None and off is not None:
        cpu_on, cpu_off = sw.cpu_us_per_request, off.cpu_us_per_request
        print(
            f"\nthe distillation detector costs {sw.p50_ms - off.p50_ms:+.3f} ms at p50, "
            f"{sw.p99_ms - off.p99_ms:+.3f} ms at p99"
            + (f", {cpu_on - cpu_off:+.0f} µs CPU per request" if cpu_on and cpu_off else "")
            + f"; {sw.rps:.0f} vs {off.rps:.0f} req/s"
        )
    if sw is not None:
        for other in ("litellm", "unmimic"):
            o = by.get(other)
            if o is None or o.added_p50_ms is None:
                continue
            ratios[other] = {
                "added_p50_ratio": o.added_p50_ms / max(sw.added_p50_ms, 1e-3),
                "added_p99_ratio": o.added_p99_ms / max(sw.added_p99_ms, 1e-3),
                "rps_ratio": sw.rps / o.rps,
                "cpu_per_request_ratio": (o.cpu_us_per_request or 0)
                / max(sw.cpu_us_per_request or 1, 1),
            }
            r = ratios[other]
            print(
                f"\n{other}: adds {r['added_p50_ratio']:.1f}x stillwatch's p50 and "
                f"{r['added_p99_ratio']:.1f}x its p99; stillwatch serves {r['rps_ratio']:.1f}x "
                f"its requests/s"
            )
        print(
            f"\nstillwatch vs targets: added p50 {sw.added_p50_ms:.3f} ms (target <= 0.5), "
            f"added p99 {sw.added_p99_ms:.3f} ms (target <= 3), {sw.rps:.0f} req/s on one core "
            f"(target >= 2000)"
        )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "gateway_overhead.json"
    out.write_text(
        json.dumps(
            {
                "results": [asdict(r) for r in results],
                "ratios": ratios,
                "rounds": args.rounds,
                "duration_s": args.duration,
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
            indent=2,
        )
    )
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
