"""The web console end to end: a real server on 127.0.0.1 and headless Chromium (Debian's
`chromium`, driven by Playwright through its executable path). Signs in with a key,
searches, opens a memory, edits it, reads the history, reverts, deletes and restores; a user
key stays inside its own user. A screenshot of each main page is saved for review under
`test-artifacts/console/` (or `$MEMVAULT_SCREENSHOTS`).

`scripts/test` installs Chromium when it is missing; CI sets `MEMVAULT_REQUIRE_BROWSER=1`,
so a run without a browser fails there instead of skipping."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memvault import MemVault, Settings
from tests.integration.rest_helpers import live_server

SHOTS = Path(
    os.environ.get(
        "MEMVAULT_SCREENSHOTS", Path(__file__).resolve().parents[2] / "test-artifacts" / "console"
    )
)


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("MEMVAULT_REQUIRE_BROWSER") == "1":
        pytest.fail("no Chromium on PATH: scripts/test installs Debian's chromium package")
    pytest.skip("no Chromium on PATH (scripts/test installs it)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    path = _chromium()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], dict[str, str]]]:
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'mv.db'}")
    with MemVault(settings) as v:
        keys = {
            "admin": v.create_api_key(admin=True)[1],
            "alice": v.create_api_key("alice")[1],
            "bob": v.create_api_key("bob")[1],
        }
        v.get_or_create_user("alice", "Alice")
        session = v.create_session("alice", agent_id="tea-bot")
        tea = v.add(
            "alice",
            "Drinks green tea every morning",
            tags=["drinks"],
            importance=0.7,
            session_id=session.session_id,
        )
        v.add("alice", "Is training for the Lisbon half marathon in May", tags=["sport"])
        v.add("alice", "Works as a radiographer at the city hospital")
        v.add_user_fact("alice", "Allergic to peanuts", "health")
        v.add_user_fact("alice", "Lives in Porto", "location")
        for text in ("Good morning!", "Can you suggest a tea for the afternoon?"):
            v.add_message("alice", "user", text, session_id=session.session_id)
        v.add_message("alice", "assistant", "Try a light oolong.", session_id=session.session_id)
        v.update_streak("alice")
        v.save_summary("alice", "Alice lives in Porto, drinks tea and runs.")
        v.add("bob", "Bob's locker code is 4921")
    with live_server(settings) as base:
        yield base, keys, {"tea": tea.memory_id}


def _shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _sign_in(page: Any, base: str, key: str) -> None:
    page.goto(f"{base}/ui/")
    assert page.url.startswith(f"{base}/ui/login")
    page.get_by_label("API key").fill(key)
    page.keyboard.press("Enter")  # the form submits from the keyboard
    page.wait_for_url(f"{base}/ui/")


def _every_control_is_labelled(page: Any) -> None:
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea')]
              .filter(e => e.type !== 'hidden' && e.labels.length === 0
                           && !e.getAttribute('aria-label'))
              .map(e => e.name)"""
    )
    assert unlabelled == []


def test_an_admin_searches_edits_reverts_deletes_and_restores(
    browser: Any, site: tuple[str, dict[str, str], dict[str, str]]
) -> None:
    base, keys, ids = site
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    try:
        page.goto(f"{base}/ui/")
        _shot(page, "01-login")
        page.get_by_label("API key").fill("mvk_not-a-key")
        page.get_by_role("button", name="Sign in").click()
        assert page.get_by_role("alert").inner_text().startswith("UNAUTHENTICATED")
        _sign_in(page, base, keys["admin"])

        # Dashboard: counts, the growth chart and its numbers, search figures.
        assert page.get_by_role("heading", name="Dashboard").is_visible()
        tiles = page.locator(".tiles").first.inner_text()
        assert re.search(r"Users\s+2", tiles), tiles
        assert re.search(r"Memories\s+6", tiles), tiles
        assert page.locator("svg[role=img] rect.bar").count() == 30
        _shot(page, "02-dashboard")

        page.get_by_role("link", name="Users").click()
        assert page.get_by_role("link", name="alice", exact=True).is_visible()
        _shot(page, "03-users")
        page.get_by_role("link", name="alice", exact=True).click()
        body = page.locator("main").inner_text()
        for seen in (
            "Allergic to peanuts",  # facts by category
            "Lives in Porto",
            "Alice lives in Porto, drinks tea and runs.",  # summary
            "tea-bot",  # sessions
            "Try a light oolong.",  # conversation
            "Current streak",
        ):
            assert seen in body, seen
        _shot(page, "04-user")

        # Search with the explain breakdown.
        page.get_by_role("link", name=re.compile(r"^Memories \(")).click()
        _every_control_is_labelled(page)
        _shot(page, "05-memories")
        page.get_by_role("searchbox", name="Search").fill("what does she drink in the morning?")
        page.get_by_role("button", name="Show").click()
        first = page.locator("ol.hits > li").first
        assert "Drinks green tea every morning" in first.inner_text()
        explain = first.locator("table.explain")
        assert "vector" in explain.inner_text()
        assert "lexical" in explain.inner_text()
        _shot(page, "06-search")

        # Open it, edit it.
        first.get_by_role("link").click()
        page.wait_for_url(re.compile(rf".*/memories/{ids['tea']}$"))
        _every_control_is_labelled(page)
        _shot(page, "07-memory")
        page.get_by_label("Content").fill("Drinks oolong tea every morning")
        page.get_by_label("Tags (comma-separated)").fill("drinks, tea")
        page.get_by_role("button", name="Save").click()
        assert page.get_by_role("status").inner_text() == "Saved as version 2."
        assert page.locator("#content").inner_text() == "Drinks oolong tea every morning"
        history = page.locator("table.history tbody tr")
        assert history.count() == 2
        _shot(page, "08-edited")

        # Revert to the first version: a new version with the old content.
        page.get_by_role("button", name="Revert to version 1").click()
        assert page.get_by_role("status").inner_text() == (
            "Reverted to version 1, saved as version 3."
        )
        assert page.locator("#content").inner_text() == "Drinks green tea every morning"
        assert page.locator("table.history tbody tr").count() == 3

        # Delete, then restore.
        page.get_by_role("button", name="Delete").click()
        assert page.get_by_role("status").inner_text().startswith("Deleted.")
        assert page.locator("h1 .badge").inner_text() == "deleted"
        _shot(page, "09-deleted")
        page.get_by_role("button", name="Restore").click()
        assert page.get_by_role("status").inner_text() == "Restored as version 5."
        assert page.locator("h1 .badge").count() == 0
        ops = page.locator("table.history tbody tr td:nth-child(2)").all_inner_texts()
        assert [o.split()[0] for o in ops] == ["restore", "delete", "revert", "update", "create"]
        _shot(page, "10-history")

        # Keyboard: the first Tab reaches the skip link.
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    finally:
        page.close()


def test_a_user_key_sees_only_its_user(
    browser: Any, site: tuple[str, dict[str, str], dict[str, str]]
) -> None:
    base, keys, ids = site
    page = browser.new_page()
    try:
        _sign_in(page, base, keys["bob"])
        tiles = page.locator(".tiles").first.inner_text()
        assert "Users" not in tiles  # a user's own dashboard
        assert re.search(r"Memories\s+1", tiles), tiles
        page.goto(f"{base}/ui/users")
        assert page.url.endswith("/ui/users/bob")
        for path in ("/ui/users/alice", f"/ui/users/alice/memories/{ids['tea']}"):
            response = page.goto(base + path)
            assert response is not None
            assert response.status == 403
            assert page.get_by_role("alert").is_visible()
        response = page.goto(f"{base}/ui/users/bob/memories/{ids['tea']}")
        assert response is not None
        assert response.status == 404
        # Alice's memory cannot be changed through Bob's pages either.
        page.goto(f"{base}/ui/users/bob/memories")
        assert "locker code" in page.locator("main").inner_text()
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url(f"{base}/ui/login")
        page.goto(f"{base}/ui/users/bob")
        assert "/ui/login" in page.url  # signed out
    finally:
        page.close()


def test_a_crafted_link_cannot_put_words_on_a_page(
    site: tuple[str, dict[str, str], dict[str, str]],
) -> None:
    import httpx

    base, keys, _ = site
    with httpx.Client(base_url=base) as c:
        c.post("/ui/login", data={"key": keys["alice"]})
        for done in ("Your key leaked, call this number", "saved", "saved:x", "saved:1:2:3"):
            page = c.get("/ui/users/alice", params={"done": done}).text
            assert 'class="flash"' not in page, done
        page = c.get("/ui/users/alice", params={"done": "reverted:1:3"}).text
        assert "Reverted to version 1, saved as version 3." in page


def test_any_user_id_has_its_pages(
    browser: Any, site: tuple[str, dict[str, str], dict[str, str]], tmp_path: Path
) -> None:
    base, keys, _ = site
    odd = ["team/alpha", "100%", "~tilde", "名前 with spaces"]
    with MemVault(Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'mv.db'}")) as v:
        for uid in odd:
            v.add(uid, f"a note of {uid}")
    page = browser.new_page()
    try:
        _sign_in(page, base, keys["admin"])
        page.goto(f"{base}/ui/users")
        for uid in odd:
            page.goto(f"{base}/ui/users")
            page.get_by_role("link", name=uid, exact=True).click()
            assert page.get_by_role("heading", level=1).inner_text() == uid
            page.get_by_role("link", name=re.compile(r"^Memories \(")).click()
            page.get_by_role("link", name=f"a note of {uid}").click()
            assert page.locator("#content").inner_text() == f"a note of {uid}"
    finally:
        page.close()


def test_a_new_user_sees_empty_pages_not_errors(
    site: tuple[str, dict[str, str], dict[str, str]], tmp_path: Path
) -> None:
    import httpx

    base, keys, _ = site
    with MemVault(Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'mv.db'}")) as v:
        _, carol = v.create_api_key("carol")  # nothing stored for carol yet
    with httpx.Client(base_url=base) as c:
        c.post("/ui/login", data={"key": carol})
        for path in ("/ui/", "/ui/users/carol", "/ui/users/carol/memories"):
            r = c.get(path)
            assert r.status_code == 200, path
        assert "Nothing is stored for this user yet." in c.get("/ui/users/carol").text
        assert "No memories match." in c.get("/ui/users/carol/memories").text
        c.post("/ui/login", data={"key": keys["admin"]})
        assert c.get("/ui/users/nobody-at-all").status_code == 404  # admin: no such user


def test_forms_from_another_site_are_refused(
    site: tuple[str, dict[str, str], dict[str, str]],
) -> None:
    import httpx

    base, keys, ids = site
    with httpx.Client(base_url=base) as c:
        c.post("/ui/login", data={"key": keys["alice"]})
        page = c.get(f"/ui/users/alice/memories/{ids['tea']}").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf is not None
        url = f"/ui/users/alice/memories/{ids['tea']}/delete"
        r = c.post(url, data={"csrf": csrf.group(1)}, headers={"Origin": "http://evil.test"})
        assert r.status_code == 403
        r = c.post(url, data={"csrf": "forged"})
        assert r.status_code == 403
        assert c.get(f"/ui/users/alice/memories/{ids['tea']}").status_code == 200  # still live
        r = c.post(url, data={"csrf": csrf.group(1)})
        assert r.status_code == 303
    # The cookie never reaches the API: it is scoped to /ui, and /v1 wants a header.
    with httpx.Client(base_url=base) as c:
        c.post("/ui/login", data={"key": keys["alice"]})
        assert c.get("/v1/memories").status_code == 401
