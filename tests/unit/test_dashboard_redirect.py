"""Where the dashboard sends a browser back to after signing in or acting
(`corral.dashboard.routes._next`): a path of this site, never another site,
whatever a link's `next=` carries. The value is checked as the browser will
read the Location header aiohttp writes (yarl drops TAB, CR and LF; browsers
read a backslash as a slash), not as the raw string."""

from __future__ import annotations

import pytest
from yarl import URL

from corral.dashboard.routes import _next

ELSEWHERE = [
    "/\t/x",  # /login?next=/%09/x: yarl strips the TAB, Location //x
    "/\n/x",
    "/\r/x",
    "/\\x",  # a browser reads /\x as //x
    "\\\\x",
    "//x",
    "///x",
    "https://x",
    "http:/x",
    "javascript:alert(1)",
    " //x",
    "x",
    "",
    "/\x00/x",
    "/\x7f/x",
    "/\x85/x",
]


@pytest.mark.parametrize("value", ELSEWHERE)
def test_anything_but_a_path_of_this_site_goes_home(value: str) -> None:
    assert _next(value) == "/"


@pytest.mark.parametrize(
    "value",
    ["/", "/jobs?state=dead", "/jobs?queue=mail&state=dead", "/jobs/12", "/schedules#top"],
)
def test_a_path_of_this_site_is_kept(value: str) -> None:
    assert _next(value) == value


@pytest.mark.parametrize("value", [*ELSEWHERE, "/jobs?error=%2F%2Fx", "/a b", "/%09/x", "/é"])
def test_what_it_returns_is_a_single_slash_path_once_aiohttp_writes_it(value: str) -> None:
    kept = _next(value)
    written = str(URL(kept))  # what HTTPSeeOther puts in Location
    assert written == kept
    assert written.startswith("/") and not written.startswith("//")
    assert not URL(written).is_absolute()
