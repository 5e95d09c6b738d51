"""A real headless Chromium driven by Selenium, for the web client's tests.

Selenium blocks, and the node under test may run on this process's reactor, so every
browser step runs in a thread: `await b.do(b.register, "alice")`. A browser that cannot
start fails the test under CI=true and skips it elsewhere (tests.servers.unavailable)."""

import os
import shutil
from collections.abc import Callable
from typing import Any

from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from tests.servers import unavailable

WAIT = 15.0
DESKTOP = (1280, 800)
PHONE = (390, 780)


def _chromedriver() -> str | None:
    return shutil.which("chromedriver") or next(
        (p for p in ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")
         if os.path.exists(p)), None)


class Browser:
    """One browser window on the web client; the methods are what a user does and sees."""

    def __init__(self, case: TestCase, url: str, name: str) -> None:
        try:
            from selenium import webdriver
            from selenium.common.exceptions import WebDriverException
            from selenium.webdriver.chrome.service import Service
        except ImportError as e:
            raise unavailable(f"selenium is not installed: {e}") from None
        driver_path = _chromedriver()
        if driver_path is None:
            raise unavailable("chromedriver is not installed (apt-get install chromium "
                              "chromium-driver)")
        options = webdriver.ChromeOptions()
        for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", f"--window-size={DESKTOP[0]},{DESKTOP[1]}"):
            options.add_argument(argument)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        try:
            self.driver = webdriver.Chrome(options=options, service=Service(driver_path))
        except WebDriverException as e:
            raise unavailable(f"cannot start Chromium: {e.msg}") from None
        self.name = name
        self.url = url
        self.folder = os.path.abspath(case.mktemp())
        os.makedirs(self.folder)
        case.addCleanup(self.driver.quit)

    @classmethod
    async def open(cls, case: TestCase, url: str, name: str) -> "Browser":
        browser = await deferToThread(cls, case, url, name)
        await browser.do(browser.driver.get, url)
        return browser

    def do(self, step: Callable[..., Any], *args: Any) -> Any:
        """Run a blocking step in a thread; returns its Deferred."""
        return deferToThread(step, *args)

    # what a user sees

    def wait(self, check: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.support.ui import WebDriverWait

        def attempt(_: Any) -> Any:
            try:
                return check()
            except StaleElementReferenceException:
                return False
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.1).until(attempt)
        except Exception:
            raise AssertionError(f"{self.name}: {what} not within {timeout}s; page: "
                                 f"{self.text('body')!r}; console: {self.console()}") from None

    def find(self, css: str) -> Any:
        from selenium.webdriver.common.by import By
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css: str) -> list[Any]:
        from selenium.webdriver.common.by import By
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self, css: str) -> str:
        found = self.all(css)
        return found[0].text if found else ""

    def shows(self, css: str, text: str, timeout: float = WAIT) -> None:
        self.wait(lambda: any(text in e.text for e in self.all(css)), f"{text!r} in {css}",
                  timeout)

    def messages(self) -> list[str]:
        return [e.text for e in self.all("#messages .text")]

    def states(self) -> list[str]:
        return [e.get_attribute("data-state") for e in self.all("#messages .state")]

    def alert(self) -> str | None:
        """The text of an open alert() box, None when there is none."""
        from selenium.common.exceptions import NoAlertPresentException
        try:
            return self.driver.switch_to.alert.text
        except NoAlertPresentException:
            return None

    def console(self) -> list[str]:
        return [entry["message"] for entry in self.driver.get_log("browser")]

    def screenshots(self, label: str) -> list[str]:
        """Desktop and phone pictures into the test's folder; their paths."""
        paths = []
        for size, (width, height) in (("desktop", DESKTOP), ("phone", PHONE)):
            self.driver.set_window_size(width, height)
            path = os.path.join(self.folder, f"{self.name}-{label}-{size}.png")
            self.driver.save_screenshot(path)
            paths.append(path)
        self.driver.set_window_size(*DESKTOP)
        return paths

    # what a user does

    def type(self, css: str, text: str) -> None:
        field = self.find(css)
        field.clear()
        field.send_keys(text)

    def register(self, name: str, password: str = "secret") -> int:
        """Register through the form, which logs in at once; the new user's id."""
        self.wait(lambda: self.find("#register-form").is_displayed(), "the register form")
        self.type("#reg-name", name)
        self.type("#reg-password", password)
        self.find("#register-form button").click()
        self.wait(lambda: self.text("#conn") == "online", "online after registering")
        return int(self.text("#me").rsplit("id ", 1)[1].rstrip(")"))

    def log_in(self, user_id: int, password: str = "secret") -> None:
        self.wait(lambda: self.find("#login-form").is_displayed(), "the login form")
        self.type("#login-id", str(user_id))
        self.type("#login-password", password)
        self.find("#login-form button").click()
        self.wait(lambda: self.text("#conn") == "online", "online after logging in")

    def scroll_to_top(self) -> None:
        self.driver.execute_script("document.getElementById('messages').scrollTop = 0")

    def add_friend(self, user_id: int) -> None:
        self.type("#add-friend-id", f"{user_id}\n")
        self.wait(lambda: self.all(f'#friends [data-key="u:{user_id}"]'), "the new friend")

    def open_chat(self, key: str) -> None:
        self.wait(lambda: self.all(f'[data-key="{key}"]'), f"conversation {key} in the list")
        self.find(f'[data-key="{key}"]').click()
        self.wait(lambda: self.find("#text").is_enabled(), "the composer")

    def say(self, text: str) -> None:
        """Type a message (a line break as Shift+Enter) and send it with Enter."""
        from selenium.webdriver.common.keys import Keys
        lines = text.split("\n")
        self.find("#text").send_keys((Keys.SHIFT + Keys.ENTER + Keys.NULL).join(lines) + Keys.ENTER)

    def say_completed(self, text: str) -> None:
        """Take the first `@` completion with Tab, then type `text` and send it."""
        from selenium.webdriver.common.keys import Keys
        self.find("#text").send_keys(Keys.TAB)
        self.wait(lambda: not self.find("#mention-list").is_displayed(), "the completion")
        self.find("#text").send_keys(text + Keys.ENTER)

    def reload(self) -> None:
        self.driver.refresh()
