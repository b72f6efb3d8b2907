"""``whisper-appliance {up,gateway,audio,worker,transcribe}``."""

from __future__ import annotations

import argparse
import os
import sys

from shared.config import Settings, cpu_count, get_settings
from whisper_appliance import transcribe_cli


def _parser(settings: Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="whisper-appliance", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run Redis (embedded if none answers), audio service, workers and gateway")
    up.add_argument(
        "--workers",
        type=int,
        default=settings.effective_workers(),
        help="worker processes (default: cores / 2, at least 1)",
    )
    up.add_argument("--port", type=int, default=settings.port, help="gateway port (default %(default)s)")
    up.add_argument("--host", default=settings.host, help="gateway address (default %(default)s)")
    up.add_argument("--model", default=settings.model, help="default model (default %(default)s)")

    gw = sub.add_parser("gateway", help="run the gateway (WebSocket, HTTP API, health)")
    gw.add_argument("--host", default=settings.host)
    gw.add_argument("--port", type=int, default=settings.port)

    au = sub.add_parser("audio", help="run the audio service (decode, split, enqueue)")
    au.add_argument("--host", default=settings.host)
    au.add_argument("--port", type=int, default=settings.audio_port)

    sub.add_parser("worker", help="run one Whisper worker")
    transcribe_cli.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    args = _parser(settings).parse_args(argv)
    if args.command == "transcribe":
        return transcribe_cli.run(args)
    if args.command == "up":
        from whisper_appliance.supervisor import run_up

        workers = max(1, args.workers)
        # Each worker gets its share of the cores so N workers do not oversubscribe M cores.
        os.environ.setdefault("S2T_CPU_THREADS", str(max(1, cpu_count() // workers)))
        return run_up(settings, workers=workers, port=args.port, host=args.host, model=args.model)
    if args.command == "worker":
        from whisper_service.worker import run_worker

        run_worker(settings)
        return 0
    import uvicorn

    from shared.logging import configure_logging, log_settings

    if args.command == "gateway":
        from gateway.app import create_app, ws_max_size

        log = configure_logging(settings, "gateway")
        log_settings(log, settings, public=True)
        config = uvicorn.Config(
            create_app(settings),
            host=args.host,
            port=args.port,
            ws_max_size=ws_max_size(settings),
            log_level="warning",
            access_log=False,
        )
        # WhisperLive's clients expect port 9090: S2T_WHISPERLIVE_PORT adds a listener there.
        ports = [args.port] + ([settings.whisperlive_port] if settings.whisperlive_port else [])
        # log_config=None: a second Config must not put uvicorn's own (non-JSON, INFO) logging back.
        sockets = [
            uvicorn.Config(config.app, host=args.host, port=port, log_config=None).bind_socket()
            for port in ports
        ]
        uvicorn.Server(config).run(sockets=sockets)
    else:
        from audio_service.app import create_app as create_audio_app

        log = configure_logging(settings, "audio_service")
        log_settings(log, settings)
        uvicorn.run(
            create_audio_app(settings), host=args.host, port=args.port, log_level="warning", access_log=False
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
