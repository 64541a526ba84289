"""The chat page in a real headless Chromium: type a question, watch the answer stream in, and
find the cited sources listed under it. Skipped only when Chromium is not installed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ragkit.serve.app import ServeSettings, create_app
from ragkit.serve.background import BackgroundServer

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason="chromium is not installed")


@pytest.fixture(scope="module")
def server(tmp_path_factory, bundled_index, local_generator):
    from test_serve_api import serve_pipeline

    rag = serve_pipeline(tmp_path_factory, bundled_index, local_generator)
    with BackgroundServer(create_app([rag], ServeSettings(max_tokens_limit=64))) as running:
        yield running


@pytest.mark.slow
def test_question_streams_an_answer_with_sources(server):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 700})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(server.url + "/")
            expect(page.locator("#model option")).to_have_text(["naive"])
            page.click("#settings summary")
            page.fill("#max-tokens", "12")
            page.fill("#question", "Who founded Varrow Point?")
            page.evaluate(
                """window.answerUpdates = 0;
                new MutationObserver((records) => {
                  for (const r of records) {
                    const el = r.target.nodeType === 1 ? r.target : r.target.parentElement;
                    if (el && el.classList.contains("answer")) window.answerUpdates++;
                  }
                }).observe(document.getElementById("log"),
                           {subtree: true, childList: true, characterData: true});"""
            )
            page.click("#send")
            answer = page.locator(".turn .answer")
            expect(answer).to_have_attribute("data-state", "streaming")
            expect(page.locator("#send")).to_be_disabled()
            expect(answer).to_have_attribute("data-state", "done", timeout=600_000)
            page.screenshot(path=str(ARTIFACTS / "chat.png"), full_page=True)

            assert page.locator(".turn .question").inner_text() == "Who founded Varrow Point?"
            assert answer.inner_text().strip()
            assert page.evaluate("window.answerUpdates") > 1  # the text arrived in pieces
            sources = page.locator(".turn .sources li")
            expect(sources).to_have_count(2)
            assert "town-overview" in sources.all_inner_texts()[0] + sources.all_inner_texts()[1]
            assert "prompt tokens" in page.locator(".turn .usage").inner_text()
            expect(page.locator("#send")).to_be_enabled()
            assert errors == []
        finally:
            browser.close()
    assert (ARTIFACTS / "chat.png").stat().st_size > 10_000
