"""Engines in their own processes, measured interleaved: batch by batch, round by round, best of the rounds.

Why: the development machine's 2 cores are shared with other jobs whose load
changes by the minute. Measuring engine A for a minute and then engine B
compares two different machines. Here every engine of one model stays open in
its own process (no thread pools competing, per-engine peak RSS), and for each
batch size the engines take turns, ``rounds`` times; each engine keeps its
best round (the least disturbed one). A round slower than ``max_call`` per
call is not repeated; an engine whose best round is that slow stops there
(larger batches are slower still); one that does not answer within
``timeout`` is killed and keeps what it measured.

Child side: ``python bench/engine_pool.py SPEC_JSON`` reads one command per
stdin line, ``{"batch", "min_time", "max_call"}``, and answers one JSON line.
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from nn_speed import cpu_threads, make_batches, measure_batch, open_engine, peak_rss_mib  # noqa: E402


class EngineProcess:
    """One engine of one model, open in a child process until :meth:`close`."""

    def __init__(self, spec: dict) -> None:
        self.spec = spec
        self._err = tempfile.TemporaryFile(mode="w+")
        self._proc = subprocess.Popen([sys.executable, __file__, json.dumps(spec)], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=self._err, text=True, bufsize=1)
        self.error: str | None = None

    def measure(self, batch: int, *, min_time: float, max_call: float, timeout: float) -> dict:
        if self.error:
            return {"batch": batch, "samples_per_s": None, "error": self.error}
        try:
            self._proc.stdin.write(json.dumps({"batch": batch, "min_time": min_time, "max_call": max_call}) + "\n")
            self._proc.stdin.flush()
        except BrokenPipeError:
            self.error = self._stderr_tail()
            return {"batch": batch, "samples_per_s": None, "error": self.error}
        ready, _, _ = select.select([self._proc.stdout], [], [], timeout)
        line = self._proc.stdout.readline() if ready else ""
        if not line:
            self.error = f"no answer within {timeout:g} s" if not ready else self._stderr_tail()
            self._proc.kill()
            return {"batch": batch, "samples_per_s": None, "error": self.error}
        return json.loads(line)

    def close(self) -> float | None:
        """Peak RSS of the child in MiB (None if it died)."""
        if self._proc.poll() is None:
            self._proc.stdin.close()
            out = self._proc.stdout.read()
            self._proc.wait()
            return next((json.loads(x)["rss_mib"] for x in out.splitlines() if x.startswith("{")), None)
        return None

    def _stderr_tail(self) -> str:
        self._proc.wait()
        self._err.seek(0)
        lines = [x for x in self._err.read().splitlines() if x.strip()]
        return (lines[-1] if lines else f"exited with {self._proc.returncode}")[:200]


def interleaved_sweep(
    specs: dict[str, dict], batches: list[int], *, rounds: int, min_time: float, max_call: float, timeout: float,
    log: Callable[[str], None] = lambda s: None,
) -> dict[str, dict]:
    """name -> {"sweep": [best result per batch], "rounds": [[samples/s per round] per batch], "rss_mib", "error"}."""
    procs = {name: EngineProcess(spec) for name, spec in specs.items()}
    out = {name: {"sweep": [], "rounds": [], "rss_mib": None, "error": None} for name in specs}
    stopped: dict[str, str] = {}
    for batch in batches:
        tries: dict[str, list[dict]] = {name: [] for name in procs}
        for _ in range(rounds):
            for name, proc in procs.items():
                slow = any(t.get("call_seconds", 0) > max_call for t in tries[name])  # no second slow round
                if name in stopped or slow:
                    continue
                result = proc.measure(batch, min_time=min_time, max_call=max_call, timeout=timeout)
                tries[name].append(result)
                if result.get("error"):
                    stopped[name] = out[name]["error"] = result["error"]
        for name in procs:
            done = [t for t in tries[name] if t.get("samples_per_s")]
            best = max(done, key=lambda t: t["samples_per_s"]) if done else {"batch": batch, "samples_per_s": None,
                                                                             "skipped": stopped.get(name)}
            out[name]["sweep"].append(best)
            out[name]["rounds"].append([t["samples_per_s"] for t in done])
            if name not in stopped and done and best["call_seconds"] > max_call:  # even its best round was too slow
                stopped[name] = f"a batch-{batch} call took {best['call_seconds']:.0f} s > {max_call:g} s"
        log(f"batch {batch}: " + ", ".join(f"{n} {(out[n]['sweep'][-1]['samples_per_s'] or 0) / 1e3:.1f}k" for n in procs))
    for name, proc in procs.items():
        out[name]["rss_mib"] = proc.close()
        done = [s for s in out[name]["sweep"] if s.get("samples_per_s")]
        out[name]["best"] = max(done, key=lambda s: s["samples_per_s"]) if done else None
    return out


def serve(spec: dict) -> None:
    """Child: answer timing commands until stdin closes; the sweep visits each batch size once, in order.

    One runner is open at a time (memory stays flat); ONNX Runtime and PyTorch
    sessions do not depend on the batch size and are kept, OpenVINO's static
    shape is recompiled per batch.
    """
    import numpy as np

    chunks = np.load(spec["chunks"])
    xml = Path(spec["xml"]) if spec.get("xml") else None  # another IR than the package's CPU one (int8)
    static = spec["engine"].startswith("ov-")
    run, batch_open, data = None, None, None
    for line in sys.stdin:
        cmd = json.loads(line)
        batch = int(cmd["batch"])
        fresh = batch != batch_open
        if fresh:
            if run is None or static:
                run = None  # release the previous compiled model first
                run = open_engine(spec["engine"], Path(spec["package"]), batch, int(chunks.shape[-1]), cpu_threads(), xml)
            batch_open, data = batch, make_batches(chunks, batch)
        result = measure_batch(run, data, min_time=cmd["min_time"], max_call=cmd["max_call"], warm_up=fresh)
        print(json.dumps(result), flush=True)
    print(json.dumps({"rss_mib": peak_rss_mib()}), flush=True)


if __name__ == "__main__":
    serve(json.loads(sys.argv[1]))
