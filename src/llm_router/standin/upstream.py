"""A plain OpenAI-compatible upstream stand-in (plays a paid API such as the custom upstream).

    python -m llm_router.standin.upstream --port 0 --api-key KEY --model ID [--model ID ...] [--name NAME]
        [--api chat,responses]

Requires `Authorization: Bearer KEY`, serves only the configured models on the configured APIs
(chat completions and Responses by default; never Anthropic Messages), and prints
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

API_PATHS = {"chat": "/v1/chat/completions", "responses": "/v1/responses", "completions": "/v1/completions"}
DEFAULT_APIS = ("chat", "responses")


class UpstreamServer(StandinServer):
    """The upstream stand-in: one API key, a fixed model list."""

    def __init__(
        self, port: int, api_key: str, models: list[str], name: str, apis: tuple[str, ...] = DEFAULT_APIS
    ) -> None:
        self.api_key = api_key
        self.models = list(models)
        self.routes = {API_PATHS[api]: api for api in apis}
        super().__init__(port, UpstreamHandler, name)


class UpstreamHandler(StandinHandler):
    server: UpstreamServer

    def handle_api(self) -> None:
        route = (self.command, self.url_path)
        protocol = self.server.routes.get(self.url_path) if self.command == "POST" else None
        if route != ("GET", "/v1/models") and protocol is None:
            self.not_found()
            return
        self._require_api_key()
        if protocol is None:
            self.send_models([(model, self.server.name) for model in self.server.models])
            return
        self.answer_inference(protocol, self._check_model)

    def not_found(self) -> None:
        """OpenAI answers unknown routes with a JSON 404."""
        message = f"Invalid URL ({self.command} {self.url_path})"
        self.send_json(404, openai_error(message, "invalid_request_error", None))

    def _check_model(self, model: str) -> None:
        if model not in self.server.models:
            message = f"The model `{model}` does not exist or you do not have access to it."
            raise RequestError(404, openai_error(message, "invalid_request_error", "model_not_found"))

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
    parser.add_argument(
        "--api",
        default=",".join(DEFAULT_APIS),
        type=parse_apis,
        help=f"comma-separated APIs to serve, of {', '.join(API_PATHS)} (default: %(default)s)",
    )
    return parser.parse_args(argv)


def parse_apis(value: str) -> tuple[str, ...]:
    apis = tuple(part.strip() for part in value.split(",") if part.strip())
    unknown = [api for api in apis if api not in API_PATHS]
    if not apis or unknown:
        raise argparse.ArgumentTypeError(f"unknown API {', '.join(unknown) or '(none)'}; known: {', '.join(API_PATHS)}")
    return apis


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop = threading.Event()
    install_stop_handlers(stop)
    try:
        server = UpstreamServer(args.port, args.api_key, args.models, args.name, args.api)
    except OSError as exc:
        print(f"standin upstream: cannot listen on {LOOPBACK}:{args.port}: {exc.strerror}", file=sys.stderr, flush=True)
        return 1
    print(f"standin upstream listening on {LOOPBACK}:{server.server_port}", flush=True)
    serve_until_stopped(server, stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
