"""``loopgate serve``: the gateway, the REST API and the dashboard, from one process."""

from __future__ import annotations

from typing import Annotated

import typer

from loopgate.cli.app import WorkspaceOpt, app, err, open_workspace


@app.command()
def serve(workspace: WorkspaceOpt = None,
          host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
          port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000) -> None:
    """Serve the workspace over HTTP: the OpenAI-compatible gateway (/v1), the REST API (/api/v1) and the
    dashboard (/)."""
    import uvicorn

    from loopgate.server import create_app

    ws = open_workspace(workspace)
    err.print(f"serving {ws.root.resolve()} on http://{host}:{port}")
    uvicorn.run(create_app(ws.root), host=host, port=port, log_level="warning")
