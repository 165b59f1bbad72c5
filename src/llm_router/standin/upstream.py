"""A plain OpenAI-compatible upstream stand-in (plays a paid API such as the custom upstream).

    python -m llm_router.standin.upstream --port 0 --api-key KEY --model ID [--model ID ...] [--name NAME]

Requires `Authorization: Bearer KEY`, serves only the configured models, and prints
`standin upstream listening on 127.0.0.1:<port>` once bound. SIGTERM/SIGINT stop it with exit 0.
"""

from __future__ import annotations

import argparse
import sys
import threading

from llm_router.standin.httpbase import (
    LOOPBACK,
    RequestError,
    StandinHandler,
    StandinServer,
    install_stop_handlers,
    openai_error,
    serve_until_stopped,
)


class UpstreamServer(StandinServer):
    """The upstream stand-in: one API key, a fixed model list."""

    def __init__(self, port: int, api_key: str, models: list[str], name: str) -> None:
        self.api_key = api_key
        self.models = list(models)
        super().__init__(port, UpstreamHandler, name)


class UpstreamHandler(StandinHandler):
    server: UpstreamServer

    def handle_api(self) -> None:
        route = (self.command, self.url_path)
        if route not in (("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("POST", "/v1/responses")):
            self.not_found()
            return
        self._require_api_key()
        if route == ("GET", "/v1/models"):
            self.send_models([(model, self.server.name) for model in self.server.models])
            return
        body = self.json_body()
        model = self.model_of(body)
        if model not in self.server.models:
            message = f"The model `{model}` does not exist or you do not have access to it."
            raise RequestError(404, openai_error(message, "invalid_request_error", "model_not_found"))
        self.serve_inference(body, responses_api=route[1] == "/v1/responses")

    def _require_api_key(self) -> None:
        header = self.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            message = "You didn't provide an API key. Provide it in an Authorization header using Bearer auth."
            raise RequestError(401, openai_error(message, "invalid_request_error", "invalid_api_key"))
        if token.strip() != self.server.api_key:
            message = "Incorrect API key provided. You can find your API key at your provider's dashboard."
            raise RequestError(401, openai_error(message, "invalid_request_error", "invalid_api_key"))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m llm_router.standin.upstream", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=LOOPBACK, choices=[LOOPBACK, "localhost"], help="loopback only")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--api-key", required=True, help="the only accepted Bearer key")
    parser.add_argument("--model", dest="models", action="append", required=True, help="a served model id (repeatable)")
    parser.add_argument("--name", default="upstream", help="server name shown in answers and x-standin-server")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop = threading.Event()
    install_stop_handlers(stop)
    try:
        server = UpstreamServer(args.port, args.api_key, args.models, args.name)
    except OSError as exc:
        print(f"standin upstream: cannot listen on {LOOPBACK}:{args.port}: {exc.strerror}", file=sys.stderr, flush=True)
        return 1
    print(f"standin upstream listening on {LOOPBACK}:{server.server_port}", flush=True)
    serve_until_stopped(server, stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
