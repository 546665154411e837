"""`evolve serve CHECKPOINT [--engine builtin|vllm]` and `evolve export CHECKPOINT OUT_DIR`.

The command line binds its socket before it prints "serving": a port in use or a host that is not this
machine's is one line, exit 2. `--engine vllm` exports the checkpoint as a Hugging Face MiniMax-M2 directory
(trainer/export.py) and runs `vllm serve` on it with MiniMax-M2's tool-call and reasoning parsers; it needs
vllm and a CUDA GPU.
"""

from __future__ import annotations

import argparse
import errno
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import torch

from trainer.checkpoint import resolve_checkpoint
from trainer.config import ConfigError
from trainer.serve.app import create_app, default_model_name


def serve_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="evolve serve", description="Serve a checkpoint over the OpenAI API.")
    p.add_argument("checkpoint", help="a checkpoint file, or a run directory (its latest checkpoint)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=_port, default=8000, help="0 picks a free port (printed)")
    p.add_argument("--engine", choices=("builtin", "vllm"), default="builtin")
    p.add_argument("--model-name", default=None, help="the id clients pass as `model` (default: the run's name)")
    args = p.parse_args(argv)
    sock = None
    try:
        resolve_checkpoint(args.checkpoint)
        if args.engine == "vllm":
            return _serve_vllm(args)
        sock = listen(args.host, args.port)
        app = create_app(args.checkpoint, args.model_name)
    except (ConfigError, ImportError) as e:
        return _fail(str(e), sock)
    except Exception as e:  # torch.load on a file that is no checkpoint can raise anything
        return _fail(f"{args.checkpoint}: cannot load it as a checkpoint ({type(e).__name__}: {e})", sock)
    import uvicorn

    host, port = sock.getsockname()[:2]
    print(f"serving {args.checkpoint} on http://{_url_host(host)}:{port}/v1", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
    return 0


def _port(text: str) -> int:
    """argparse type for --port: a TCP port, so 99999 is a usage error rather than uvicorn's OverflowError."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a TCP port (0..65535)")
    return port


def listen(host: str, port: int) -> socket.socket:
    """The server's socket, bound before anything says "serving": a port in use or a host that is not this
    machine's is one line (ConfigError), not uvicorn's exit 3 after a false start."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except (OSError, UnicodeError) as e:
        raise ConfigError(f"--host {host!r}: not an address of this machine ({getattr(e, 'strerror', None) or e}); "
                          "use 127.0.0.1 (local only) or 0.0.0.0 (all interfaces)") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is no conflict
        sock.bind(address)
        sock.listen(2048)  # uvicorn's backlog; from here a client that read "serving" is queued, not refused
    except OSError as e:
        sock.close()
        hint = "choose another --port" if e.errno == errno.EADDRINUSE else "choose a --host of this machine"
        raise ConfigError(f"--host {host} --port {port}: cannot listen there ({e.strerror or e}); {hint}") from None
    return sock


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _fail(message: str, sock: socket.socket | None = None) -> int:
    if sock is not None:
        sock.close()
    print("error: " + " ".join(message.split()), file=sys.stderr)  # one line, whatever the message
    return 2


def _serve_vllm(args: argparse.Namespace) -> int:
    """Export, then run `vllm serve` on the export until it exits or we are told to stop."""
    exe = shutil.which("vllm")
    if exe is None:
        raise ConfigError("--engine vllm needs the `vllm` executable on PATH (pip install 'evolve[vllm]'); "
                       "or use --engine builtin")
    if not torch.cuda.is_available():
        raise ConfigError("--engine vllm needs a CUDA GPU and none is visible; use --engine builtin")
    listen(args.host, args.port).close()  # vllm binds it itself: this only checks, before the export, that it can
    from trainer.export import export  # only this engine needs it

    name = args.model_name or default_model_name(args.checkpoint)
    with tempfile.TemporaryDirectory(prefix="evolve-serve-") as tmp:
        out = export(args.checkpoint, Path(tmp) / name)
        cmd = [exe, "serve", str(out), "--served-model-name", name, "--host", args.host, "--port", str(args.port),
               "--dtype", "float32", "--enable-auto-tool-choice", "--tool-call-parser", "minimax_m2",
               "--reasoning-parser", "minimax_m2_append_think"]
        proc, stopped = subprocess.Popen(cmd), []
        for sig in (signal.SIGINT, signal.SIGTERM):  # vllm shuts down cleanly on these; let it
            signal.signal(sig, lambda s, _f: (stopped.append(s), proc.send_signal(s)))
        try:
            if _wait_healthy(proc, f"http://{'127.0.0.1' if args.host == '0.0.0.0' else args.host}:{args.port}"):
                print(f"serving {args.checkpoint} (vllm) on http://{args.host}:{args.port}/v1", flush=True)
            rc = proc.wait()
            return 0 if stopped else rc if rc >= 0 else 1
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()


def _wait_healthy(proc: subprocess.Popen, base: str) -> bool:
    """Poll /health until it answers 200 (True) or the server process exits (False)."""
    while proc.poll() is None:
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(1)
    return False


def export_command(argv: list[str]) -> int:
    """`evolve export`: the checkpoint as a Hugging Face model directory, for transformers and vLLM."""
    from trainer.export import export_main

    return export_main(argv)
