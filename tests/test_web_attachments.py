"""Attachments in the web client, in a real headless Chromium against a real node: a photo
dropped into a conversation reaches the other browser as a thumbnail that opens the
original, a file downloads under its name, a refused upload says why and can be retried."""

import base64
import os

from twisted.trial.unittest import TestCase

from tests.browser import Browser
from tests.test_attachments import jpeg_with_gps
from tests.test_web_browser import pair, web_node

# Drops files on the conversation as a user's drag and drop does: a DataTransfer of File
# objects made in the page from base64 (Selenium cannot drag from the desktop).
DROP = """
const [name, type, data] = arguments;
const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
const transfer = new DataTransfer();
transfer.items.add(new File([bytes], name, { type }));
const zone = document.getElementById("conversation");
const init = { dataTransfer: transfer, bubbles: true, cancelable: true };
zone.dispatchEvent(new DragEvent("dragover", init));
zone.dispatchEvent(new DragEvent("drop", init));
"""


def drop(browser: Browser, name: str, mime: str, data: bytes) -> None:
    browser.driver.execute_script(DROP, name, mime, base64.b64encode(data).decode())


class WebAttachmentTests(TestCase):
    timeout = 120

    async def test_a_dropped_photo_is_a_thumbnail_that_opens_the_original(self):
        web = await web_node(self)
        alice, bob, a_id, b_id = await pair(self, web.url)
        await bob.do(bob.open_chat, f"u:{a_id}")
        await alice.do(drop, alice, "cat.jpg", "image/jpeg", jpeg_with_gps())
        await bob.do(bob.wait, lambda: bob.all("#messages .photo img"), "the thumbnail")
        loaded = await bob.do(bob.wait, lambda: bob.driver.execute_script(
            "const i = document.querySelector('#messages .photo img');"
            " return i.complete && i.naturalWidth ? [i.naturalWidth, i.naturalHeight] : null;"),
            "the thumbnail loaded")
        self.assertEqual(max(loaded), 320)
        link = await bob.do(lambda: bob.find("#messages .photo").get_attribute("href"))
        self.assertIn("/media/", link)
        await alice.do(alice.wait, lambda: alice.states() == ["read"],
                       "alice's photo sent, and seen by bob")
        self.assertEqual(await alice.do(alice.all, "#uploads .upload"), [])
        self.assertEqual(await bob.do(bob.console), [])
        await bob.do(bob.screenshots, "photo")

    async def test_a_file_downloads_under_its_name(self):
        web = await web_node(self)
        alice, bob, a_id, b_id = await pair(self, web.url)
        await bob.do(bob.open_chat, f"u:{a_id}")
        data = os.urandom(5000)
        await alice.do(drop, alice, "report.bin", "application/octet-stream", data)
        await bob.do(bob.shows, "#messages .file", "report.bin (4.9 KB)")
        await bob.do(lambda: bob.driver.execute_cdp_cmd(
            "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": bob.folder}))
        await bob.do(lambda: bob.find("#messages .file").click())
        saved = os.path.join(bob.folder, "report.bin")
        await bob.do(bob.wait, lambda: os.path.exists(saved) and os.path.getsize(saved) == 5000,
                     "the download")
        with open(saved, "rb") as f:
            self.assertEqual(f.read(), data)

    async def test_a_refused_upload_says_why_and_can_be_retried(self):
        web = await web_node(self)
        alice, bob, a_id, b_id = await pair(self, web.url)
        await alice.do(drop, alice, "page.html", "text/html", b"<html></html>")
        await alice.do(alice.shows, "#uploads .status", "not sent: file name or type not allowed")
        self.assertTrue(await alice.do(lambda: alice.find("#uploads .retry").is_displayed()))
        await alice.do(drop, alice, "fake.jpg", "image/jpeg", b"<!doctype html>" + b" " * 600)
        await alice.do(alice.shows, "#uploads .status",
                       "not sent: the file does not match its upload slot")
        await alice.do(alice.screenshots, "refused")
