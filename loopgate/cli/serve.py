"""``loopgate serve``: the gateway, the REST API and the dashboard, from one process."""

from __future__ import annotations

from typing import Annotated

import typer

from loopgate.cli.app import WorkspaceOpt, app, err, open_workspace


@app.command()
def serve(workspace: WorkspaceOpt = None,
          host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
          port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
          api_keys: Annotated[bool, typer.Option("--api-keys/--no-api-keys", help="Require a key per app on /v1 "
                                                 "(make one with `loopgate key create APP`).")] = True,
          rate: Annotated[float, typer.Option("--rate", min=0.001, help="Requests per second per key "
                                              "(token bucket refill).")] = 50.0,
          burst: Annotated[int, typer.Option("--burst", min=1, help="Token bucket capacity per key.")] = 100,
          max_request_bytes: Annotated[int, typer.Option("--max-request-bytes", min=256,
                                                         help="Largest request body (413 above).")] = 64 * 1024,
          max_tokens: Annotated[int, typer.Option("--max-tokens", min=1,
                                                  help="Most new tokens one request may ask for.")] = 256,
          timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds a request may take "
                                                 "(504 after).")] = 30.0,
          max_batch: Annotated[int, typer.Option("--max-batch", min=1, help="Dynamic batching: most requests "
                                                 "in one batch.")] = 32,
          max_wait_ms: Annotated[float, typer.Option("--max-wait-ms", min=0.0, help="Dynamic batching: how long "
                                                     "a batch waits for company.")] = 5.0,
          max_loaded: Annotated[int, typer.Option("--max-loaded", min=1, help="Versions kept loaded at once; the "
                                                  "least recently used idle one is unloaded for another.")] = 4,
          max_n: Annotated[int, typer.Option("--max-n", min=1, help="Most choices (n) one request may ask for.")
                           ] = 8,
          max_logprobs: Annotated[int, typer.Option("--max-logprobs", min=0, help="Most alternatives per token a "
                                                    "request may ask for (logprobs, top_logprobs).")] = 20,
          adapter_memory: Annotated[float, typer.Option("--adapter-memory", min=0.0, help="MiB of LoRA adapters "
                                                        "kept loaded on shared bases (every adapter version on one "
                                                        "base shares it; least recently used out beyond this); 0 "
                                                        "merges each adapter version into its own copy instead.")
                                    ] = 1024.0,
          ) -> None:
    """Serve the workspace over HTTP: the OpenAI-compatible gateway (/v1), the REST API (/api/v1) and the
    dashboard (/)."""
    import uvicorn

    from loopgate.server import create_app
    from loopgate.server.gateway import GatewaySettings
    from loopgate.server.gateway import router as gateway_router

    ws = open_workspace(workspace)
    settings = GatewaySettings(require_keys=api_keys, rate_per_s=rate, burst=burst,
                               max_request_bytes=max_request_bytes, max_tokens=max_tokens, timeout_s=timeout,
                               max_batch=max_batch, max_wait_ms=max_wait_ms, max_loaded=max_loaded, max_n=max_n,
                               max_logprobs=max_logprobs, adapter_memory_mb=adapter_memory)
    application = create_app(ws.root, gateway=False)
    application.include_router(gateway_router(ws, settings))
    err.print(f"serving {ws.root.resolve()} on http://{host}:{port}"  # one line, never wrapped: a URL to copy
              + ("" if api_keys else " (no API keys required on /v1)"), soft_wrap=True)
    uvicorn.run(application, host=host, port=port, log_level="warning")
