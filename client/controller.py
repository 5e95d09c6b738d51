"""The conversation with the user: the start menu, then commands, as in the original client."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, Protocol

from twisted.internet.defer import Deferred

from client import accounts, actions, commands, display, notify
from client.commands import CommandError
from client.files import FileFailed
from client.history import HistoryFailed
from client.protocol import Frame
from client.session import Outgoing, RequestFailed, Session

DRAIN_TIMEOUT = 5.0


class Console(Protocol):
    """Where lines come from and go to: a terminal with prompts, or plain lines."""

    def read_line(self, prompt: str, password: bool = False) -> Deferred[str | None]:
        """The next line the user enters, or None at the end of input."""

    def show(self, lines: list[str]) -> None:
        """Lines that are part of the output format (see docs/client.md)."""

    def hint(self, lines: list[str]) -> None:
        """Lines only a person at a terminal needs, like the start menu."""


class EndOfInput(Exception):
    """The user closed the input (Ctrl-D, or the end of a script)."""


class Controller:
    """Runs the start menu while logged out and the commands while logged in."""

    def __init__(self, session: Session, console: Console) -> None:
        self._session = session
        self._console = console

    async def run(self) -> None:
        """Until `quit`, menu choice 3, or the end of input; then let the outbox drain."""
        try:
            while await (self._command() if self._session.logged_in else self._menu()):
                pass
        except EndOfInput:
            pass
        unsent = await self._drain()
        self._console.show([display.unconfirmed(out.text) for out in unsent])
        self._session.close()

    async def _read(self, prompt: str, password: bool = False) -> str:
        line = await self._console.read_line(prompt, password)
        if line is None:
            raise EndOfInput()
        return line

    async def _menu(self) -> bool:
        self._console.hint(display.menu())
        try:
            choice = await self._answers(commands.parse_menu(await self._read("choice:")))
        except CommandError as error:
            self._console.show([display.error(str(error))])
            return True
        if isinstance(choice, commands.Login):
            if await self._ask("login failed", self._session.login(choice.user_id,
                                                                   choice.password)):
                self._console.hint(display.help_lines())
        elif isinstance(choice, commands.Register):
            reply = await self._ask("register failed",
                                    self._session.register(choice.name, choice.password))
            if reply:
                self._console.show([display.registered(reply.get("id"), choice.name)])
        return not isinstance(choice, commands.Quit)

    async def _answers(self, choice: commands.MenuChoice) -> commands.MenuChoice:
        """Menu choices 1 and 2 ask for the rest, like the original client."""
        if isinstance(choice, commands.AskLogin):
            user_id = commands.parse_id(await self._read("userid:"), "userid")
            password = await self._read("userpassword:", password=True)
            return commands.Login(user_id, commands.parse_password(password))
        if isinstance(choice, commands.AskRegister):
            name = commands.parse_name(await self._read("username:"))
            password = await self._read("userpassword:", password=True)
            return commands.Register(name, commands.parse_password(password))
        return choice

    async def _command(self) -> bool:
        me = self._session.me
        line = await self._read(f"{display.user(me)}> " if me else "> ")
        if not line.strip():
            return True
        if not self._session.logged_in:
            self._console.show([display.error("you have been logged out; log in again")])
            return True
        try:
            command = (accounts.parse_command(line) or actions.parse(line)
                       or commands.parse_command(line))
        except CommandError as error:
            self._console.show([display.error(str(error))])
            return True
        return await self._execute(command)

    async def _execute(self, command: commands.Command | accounts.AccountCommand
                       | actions.ActionCommand) -> bool:
        session, show = self._session, self._console.show
        match command:
            case commands.Quit():
                return False
            case commands.Help():
                show(display.help_lines() + actions.help_lines() + accounts.help_lines())
            case commands.Friends():
                if await self._ask(f"{command} failed", session.friend_list()):
                    show(display.friend_list(session.friends))
            case commands.Groups():
                if await self._ask(f"{command} failed", session.group_list()):
                    show(display.group_list(session.groups))
            case commands.Chat(to, msg):
                session.chat(to, msg, str(command))
            case commands.GroupChat(group_id, msg):
                session.group_chat(group_id, msg, str(command))
            case commands.AddFriend(friend_id):
                if reply := await self._ask(f"{command} failed", session.add_friend(friend_id)):
                    show([f"friend added: {display.presence(reply.get('friend') or {})}"])
            case commands.CreateGroup(name, desc):
                if reply := await self._ask(f"{command} failed",
                                            session.create_group(name, desc)):
                    show([f"group created: {display.group_title(reply['group'])}"])
            case commands.AddGroup(group_id):
                if reply := await self._ask(f"{command} failed", session.add_group(group_id)):
                    group = reply.get("group") or {}
                    show([f"group joined: {display.group_title(group)}", *display.members(group)])
            case commands.Loginout():
                await self._logout()
            case _:
                await self._converse(command)
        return True

    async def _converse(self, command: commands.Command | accounts.AccountCommand
                        | actions.ActionCommand) -> None:
        """The conversation commands of proto 2 (docs/client.md)."""
        session, show, ask = self._session, self._console.show, self._ask
        match command:
            case commands.History(target, count, group):
                await self._history(command, {"groupid" if group else "peer": target}, count)
            case commands.RemoveFriend(friend_id):
                who = session.person(friend_id)
                if await ask(f"{command} failed", session.remove_friend(friend_id)):
                    show([f"friend removed: {display.user(who)}"])
            case commands.LeaveGroup(group_id):
                if await ask(f"{command} failed", session.leave_group(group_id)):
                    show([f"group left: [{group_id}]"])
            case commands.Kick(group_id, user_id):
                if await ask(f"{command} failed", session.kick(group_id, user_id)):
                    show([f"member removed: [{group_id}] {display.user(session.person(user_id))}"])
            case commands.Block(user_id, block):
                if await ask(f"{command} failed", session.block(user_id, block)):
                    word = "blocked" if block else "unblocked"
                    show([f"{word}: {display.user(session.person(user_id))}"])
            case commands.SendFile(target, path, group):
                await self._files(session.files.send(
                    {"groupid" if group else "to": target}, path, str(command)))
            case commands.GetFile(mid, path):
                await self._files(session.files.get(mid, path or None), f"{command} saved")
            case commands.Devices():
                if reply := await ask(f"{command} failed", session.devices()):
                    show(display.devices(reply.get("devices") or [], session.device))
            case commands.Mute():
                if reply := await ask(f"{command} failed",
                                      session.request(notify.mute_request(command))):
                    show([notify.muted_line(reply, notify.mute_name(command, session))])
            case actions.Reply():
                try:
                    session.reply(command)
                except CommandError as error:
                    show([display.error(str(error))])
            case actions.Recall() | actions.Edit() | actions.React():
                if await ask(f"{command} failed", session.request(actions.request(command))):
                    show([actions.done(command)])
            case _:
                await accounts.AccountCommands(session, show, ask, self._read).run(command)

    async def _history(self, command: commands.History, target: Frame, count: int) -> None:
        try:
            messages, more = await self._session.history(target, count)
        except RequestFailed as failure:
            self._console.show([display.error(f"{command} failed: {failure}")])
            return
        except HistoryFailed as failure:
            self._console.show([display.reply_error(failure.args[0], f"{command} failed")])
            return
        for frame in messages:
            self._session.places.seen(frame)
        lines = [actions.kept(frame, self._session.describe) for frame in messages]
        title = (f"in group [{target['groupid']}]" if "groupid" in target
                 else f"with {display.user(self._session.person(target['peer']))}")
        self._console.show(display.history(title, lines, more))

    async def _logout(self) -> None:
        await self._drain()
        if await self._ask("loginout failed", self._session.logout()):
            self._console.show([display.info("logged out")])

    async def _drain(self) -> list[Outgoing]:
        """Before leaving, give the server a moment to confirm what the user sent."""
        waiting = len(self._session.unconfirmed)
        if not waiting:
            return []
        self._console.show([display.info(f"waiting up to {DRAIN_TIMEOUT:.0f} s for the "
                                         f"server to confirm {waiting} message(s)")])
        return await self._session.drain(DRAIN_TIMEOUT)

    async def _files(self, work: Coroutine[Any, Any, Any], done: str = "") -> None:
        """A file command: its failure shown, and with `done` its result."""
        try:
            result = await work
        except (FileFailed, RequestFailed, OSError) as failure:
            self._console.show([display.error(f"{failure}")])
            return
        except Exception as failure:  # the HTTP client's connection errors
            self._console.show([display.error(f"file transfer failed: {failure}")])
            return
        if done:
            self._console.show([f"{done}: {result}"])

    async def _ask(self, context: str, request: Coroutine[Any, Any, Frame]) -> Frame | None:
        """The reply when the request succeeded; otherwise None, and the user is told why."""
        try:
            reply = await request
        except RequestFailed as failure:
            self._console.show([display.error(f"{context}: {failure}")])
            return None
        if reply.get("errno"):
            self._console.show([display.reply_error(reply, context)])
            return None
        return reply
