"""``/me`` and ``/lines…``: the caller, the lines with their channels and versions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from loopgate import loop
from loopgate.loop.lines import tier_order
from loopgate.loop.outcomes import ChannelReport, StatusRow, VersionView
from loopgate.loop.versions import channel_report, line_versions
from loopgate.server.api.bodies import LineSummaryPage
from loopgate.server.api.routes import Api
from loopgate.store.pages import line_summaries
from loopgate.store.tokens import TokenInfo


def add_routes(r: APIRouter, api: Api) -> None:
    ws, viewer = api.ws, api.viewer

    @r.get("/me", response_model=TokenInfo)
    def me(token: TokenInfo = viewer) -> TokenInfo:
        """The calling token (its name and role)."""
        return token

    @r.get("/lines", response_model=list[StatusRow])
    def lines(_: TokenInfo = viewer) -> list[StatusRow]:
        """Every line with its channels, latest version and pinning (``loopgate status``)."""
        return loop.ecosystem_status(ws)

    @r.get("/line-summaries", response_model=LineSummaryPage)
    def line_summary_page(_: TokenInfo = viewer, offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
                          limit: Annotated[int, Query(ge=1, le=500)] = 100) -> LineSummaryPage:
        """A page of lines in tier order — channels, latest version, its latest verdict, the parent version
        production was built on — in a bounded number of queries (``/lines`` returns every line)."""
        order = tier_order(ws)
        names = order[offset:offset + limit]
        found = line_summaries(ws.store, names)
        return LineSummaryPage(offset=offset, limit=limit, total=len(order),
                               lines=[found[n] for n in names if n in found])

    @r.get("/lines/{line}/versions", response_model=list[VersionView])
    def versions(line: str, _: TokenInfo = viewer) -> list[VersionView]:
        return line_versions(ws, line)

    @r.get("/lines/{line}/channels", response_model=ChannelReport)
    def channels(line: str, _: TokenInfo = viewer) -> ChannelReport:
        """Where the channels point, the rollback target, and every move with its actor and reason."""
        return channel_report(ws, line)
