"""Generated function-calling tasks (training data that never overlaps the BFCL test set).

``generate_task(n)`` is deterministic in ``n``: it draws one or two backend classes, a small initial config and
2-4 user turns from request templates. Each template looks at the live backends (a scratch ``BFCLSession`` that
plays the ground truth as it is generated), so every ground-truth call is valid where it runs, and every
generated task is checked to run without an error result.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from envs.function_calling.fctask import FCTask
from tools.bfcl import BFCLSession
from tools.bfcl.filesystem import Directory, File

__all__ = ["generate_task"]

WORDS = ["alpha", "beta", "notes", "draft", "report", "budget", "plan", "data", "summary", "log", "ideas", "todo"]
EXTS = [".txt", ".md", ".csv", ".log"]
PEOPLE = ["Alice", "Bob", "Catherine", "Daniel"]
SYMBOLS = ["AAPL", "GOOG", "TSLA", "MSFT", "NVDA", "ALPH", "OMEG", "QUAS", "NEPT", "SYNX", "ZETA"]
CITIES = ["Rivermist", "Stonebrook", "Maplecrest", "Silverpine", "Shadowridge", "Oakendale", "Willowbend"]
Template = Callable[[random.Random, BFCLSession], tuple[str, list[str]] | None]


def _fs_config(rng: random.Random) -> dict[str, Any]:
    def files(count: int) -> dict[str, Any]:
        names = rng.sample(WORDS, count)
        return {
            f"{name}{rng.choice(EXTS)}": {
                "type": "file",
                "content": "\n".join(
                    rng.sample(
                        ["first line", "second entry", "third item", "budget 42", "review later", "final note"],
                        rng.randint(1, 4),
                    )
                ),
            }
            for name in names
        }

    dirs = {
        name: {"type": "directory", "contents": files(rng.randint(1, 3))}
        for name in rng.sample(["docs", "projects", "archive", "photos", "work"], 2)
    }
    return {"root": {"workspace": {"type": "directory", "contents": {**files(2), **dirs}}}}


def _fs(session: BFCLSession) -> Any:
    return session.backends["GorillaFileSystem"]


def _go_to(session: BFCLSession, target: str | None) -> list[str]:
    """Calls that move from the current directory to the root, then into ``target`` (one level)."""
    fs = _fs(session)
    calls = []
    node = fs._cwd
    while node.parent is not None:
        calls.append("cd(folder='..')")
        node = node.parent
    if target:
        calls.append(f"cd(folder='{target}')")
    return calls


def _pick_dir(rng: random.Random, session: BFCLSession) -> str:
    return rng.choice([name for name, item in _fs(session).root.contents.items() if isinstance(item, Directory)])


def _files_in(session: BFCLSession, folder: str) -> list[str]:
    node = _fs(session).root.contents[folder]
    return [name for name, item in node.contents.items() if isinstance(item, File)]


def t_touch_echo(rng: random.Random, session: BFCLSession) -> tuple[str, list[str]] | None:
    folder = _pick_dir(rng, session)
    name = f"{rng.choice(WORDS)}_{rng.randint(1, 99)}{rng.choice(EXTS)}"
    if name in _fs(session).root.contents[folder].contents:
        return None
    text = rng.choice(["meeting at noon", "ship it", "check the numbers", "call the bank"])
    calls = [*_go_to(session, folder), f"touch(file_name='{name}')", f"echo(content='{text}', file_name='{name}')"]
    return f"In the '{folder}' folder, create a file named '{name}' and write '{text}' into it.", calls


def t_mkdir_mv(rng: random.Random, session: BFCLSession) -> tuple[str, list[str]] | None:
    folder = _pick_dir(rng, session)
    files = _files_in(session, folder)
    new_dir = f"{rng.choice(WORDS)}_box"
    if not files or new_dir in _fs(session).root.contents[folder].contents:
        return None
    name = rng.choice(files)
    calls = [*_go_to(session, folder), f"mkdir(dir_name='{new_dir}')", f"mv(source='{name}', destination='{new_dir}')"]
    return f"Inside '{folder}', make a new directory '{new_dir}' and move '{name}' into it.", calls


def t_rename(rng: random.Random, session: BFCLSession) -> tuple[str, list[str]] | None:
    folder = _pick_dir(rng, session)
    files = _files_in(session, folder)
    if not files:
        return None
    name = rng.choice(files)
    new_name = f"renamed_{name}"
    if new_name in _fs(session).root.contents[folder].contents:
        return None
    calls = [*_go_to(session, folder), f"mv(source='{name}', destination='{new_name}')"]
    return f"Rename '{name}' in the '{folder}' directory to '{new_name}'.", calls


def t_count_lines(rng: random.Random, session: BFCLSession) -> tuple[str, list[str]] | None:
    folder = _pick_dir(rng, session)
    files = _files_in(session, folder)
    if not files:
        return None
    name = rng.choice(files)
    mode, unit = rng.choice([("l", "lines"), ("w", "words"), ("c", "characters")])
    calls = [*_go_to(session, folder), f"wc(file_name='{name}', mode='{mode}')"]
    return f"How many {unit} are in '{name}' in the '{folder}' folder?", calls


def t_remove(rng: random.Random, session: BFCLSession) -> tuple[str, list[str]] | None:
    folder = _pick_dir(rng, session)
    files = _files_in(session, folder)
    if len(files) < 2:
        return None
    name = rng.choice(files)
    return f"Delete the file '{name}' from '{folder}'.", [*_go_to(session, folder), f"rm(file_name='{name}')"]


def t_math(rng: random.Random, session: BFCLSession) -> tuple[str, list[str]] | None:
    a, b = rng.randint(2, 999), rng.randint(2, 99)
    kind = rng.randrange(4)
    if kind == 0:
        return f"What is {a} plus {b}?", [f"add(a={a}, b={b})"]
    if kind == 1:
        return f"Multiply {a} by {b} for me.", [f"multiply(a={a}, b={b})"]
    numbers = [rng.randint(1, 100) for _ in range(rng.randint(3, 6))]
    if kind == 2:
        return f"Compute the mean of {numbers}.", [f"mean(numbers={numbers})"]
    return f"What is the largest value in {numbers}?", [f"max_value(numbers={numbers})"]


def t_ticket(rng: random.Random, session: BFCLSession) -> tuple[str, list[str]] | None:
    api = session.backends["TicketAPI"]
    title = rng.choice(["Printer jam", "VPN down", "Laptop overheating", "Password reset", "Broken chair"])
    priority = rng.randint(1, 5)
    calls = [] if api.current_user else ["ticket_login(username='sam', password='pw123')"]
    prefix = "" if api.current_user else "Log me in to the ticket system as 'sam' with password 'pw123', then "
    calls.append(f"create_ticket(title='{title}', description='Reported by sam', priority={priority})")
    verb = "open" if prefix else "Open"
    return f"{prefix}{verb} a ticket titled '{title}' (description 'Reported by sam') with priority {priority}.", calls


def t_ticket_close(rng: random.Random, session: BFCLSession) -> tuple[str, list[str]] | None:
    api = session.backends["TicketAPI"]
    open_ids = [ticket["id"] for ticket in api.ticket_queue if ticket["status"] == "Open"]
    if not open_ids:
        return None
    ticket_id = rng.choice(open_ids)
    if rng.random() < 0.5:
        return f"Close ticket {ticket_id}.", [f"close_ticket(ticket_id={ticket_id})"]
    note = rng.choice(["Replaced the part", "Reset the account", "Restarted the service"])
    return (
        f"Resolve ticket {ticket_id} with the resolution '{note}'.",
        [f"resolve_ticket(ticket_id={ticket_id}, resolution='{note}')"],
    )


def t_vehicle_start(rng: random.Random, session: BFCLSession) -> tuple[str, list[str]] | None:
    car = session.backends["VehicleControlAPI"]
    if car.engine_state == "running":
        return None
    doors = [door for door, status in car.doorStatus.items() if status == "unlocked"]
    calls = [f"lockDoors(unlock=False, door={doors})"] if doors else []
    calls += ["pressBrakePedal(pedalPosition=1.0)", "startEngine(ignitionMode='START')"]
    return "Lock every door, press the brake fully and start the engine.", calls


def t_vehicle_fuel(rng: random.Random, session: BFCLSession) -> tuple[str, list[str]] | None:
    car = session.backends["VehicleControlAPI"]
    room = int(50 - car.fuelLevel)
    if room < 2:
        return None
    amount = rng.randint(1, room)
    return f"Add {amount} gallons of fuel to the tank.", [f"fillFuelTank(fuelAmount={amount})"]


def t_vehicle_nav(rng: random.Random, session: BFCLSession) -> tuple[str, list[str]] | None:
    city = rng.choice(CITIES)
    street = f"{rng.randint(1, 999)} {rng.choice(['Oak', 'Pine', 'Main', 'Lake'])} Street"
    return f"Navigate to {street}, {city}, CA.", [f"set_navigation(destination='{street}, {city}, CA')"]


def t_trading(rng: random.Random, session: BFCLSession) -> tuple[str, list[str]] | None:
    bot = session.backends["TradingBot"]
    symbol = rng.choice(SYMBOLS)
    calls = [] if bot.authenticated else ["trading_login(username='trader', password='secret')"]
    intro = "" if bot.authenticated else "Log in to trading as 'trader' with password 'secret'. "
    kind = rng.randrange(3)
    if kind == 0:
        calls.append(f"add_to_watchlist(stock='{symbol}')")
        return f"{intro}Add {symbol} to my watchlist.", calls
    if kind == 1:
        calls.append(f"get_stock_info(symbol='{symbol}')")
        return f"{intro}Show me the current details of {symbol}.", calls
    amount = rng.randint(1, 20)
    price = bot.stocks[symbol]["price"]
    calls.append(f"place_order(order_type='Buy', symbol='{symbol}', price={price}, amount={amount})")
    return f"{intro}Buy {amount} shares of {symbol} at {price} per share.", calls


def t_message(rng: random.Random, session: BFCLSession) -> tuple[str, list[str]] | None:
    api = session.backends["MessageAPI"]
    sender, receiver = rng.sample(PEOPLE, 2)
    text = rng.choice(["Lunch at one?", "The report is ready.", "Please review my draft.", "See you tomorrow."])
    calls = [] if api.current_user else [f"message_login(user_id='{api.user_map[sender]}')"]
    intro = "" if api.current_user else f"Log me in to messaging with user id {api.user_map[sender]}. "
    calls += [
        f"get_user_id(user='{receiver}')",
        f"send_message(receiver_id='{api.user_map[receiver]}', message='{text}')",
    ]
    return f"{intro}Find {receiver}'s user id and send them the message '{text}'.", calls


CLASS_TEMPLATES: dict[str, list[Template]] = {
    "GorillaFileSystem": [t_touch_echo, t_mkdir_mv, t_rename, t_count_lines, t_remove],
    "MathAPI": [t_math],
    "TicketAPI": [t_ticket, t_ticket_close],
    "VehicleControlAPI": [t_vehicle_start, t_vehicle_fuel, t_vehicle_nav],
    "TradingBot": [t_trading],
    "MessageAPI": [t_message],
}


def _config_for(class_name: str, rng: random.Random) -> dict[str, Any]:
    if class_name == "GorillaFileSystem":
        return _fs_config(rng)
    if class_name == "VehicleControlAPI":
        return {"fuelLevel": float(rng.randint(0, 30)), "batteryVoltage": 12.6}
    if class_name == "TradingBot":
        return {
            "account_info": {
                "account_id": rng.randint(10000, 99999),
                "balance": float(rng.randint(5, 50) * 1000),
                "binding_card": 1234567812345678,
            }
        }
    return {}


@lru_cache(maxsize=4096)
def generate_task(index: int) -> FCTask:
    """Task ``gen_<index>``: deterministic, valid ground truth, 2-4 turns over one or two backends."""
    rng = random.Random(f"resrl-fc-{index}")
    for _ in range(50):
        classes = rng.sample(sorted(CLASS_TEMPLATES), rng.choice([1, 2]))
        config = {name: _config_for(name, rng) for name in classes}
        session = BFCLSession(config, classes)
        turns: list[str] = []
        truth: list[list[str]] = []
        attempts = 0
        target = rng.randint(2, 4)
        while len(turns) < target and attempts < 30:
            attempts += 1
            made = rng.choice(CLASS_TEMPLATES[rng.choice(classes)])(rng, session)
            if made is None:
                continue
            text, calls = made
            results = [session.execute(call) for call in calls]
            if any(r.startswith("Error during execution") or '"error"' in r for r in results):
                raise AssertionError(f"generated ground truth failed for gen_{index}: {calls} -> {results}")
            turns.append(text)
            truth.append(calls)
        if len(turns) == target:
            return FCTask(
                task_id=f"gen_{index}",
                task_set="generated",
                user_turns=turns,
                initial_config=config,
                involved_classes=classes,
                ground_truth=truth,
            )
    raise AssertionError(f"could not generate task gen_{index}")
