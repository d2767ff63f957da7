"""Long-context mode of the eight BFCL backends, switch by switch, against BFCL's own source.

Every expected value below is read from github ShishirPatil/gorilla, folder
``berkeley-function-call-leaderboard/bfcl_eval/eval_checker/multi_turn_eval/func_source_code/``:

- ``long_context.py`` @ 98977e1d8a257250f97e622e8bb86067ff21dff5 (the filler constants, named in each test);
- ``gorilla_file_system.py`` @ 164141b5bc56ed5f919f977944e61184c489f1f9 (``_load_directory``: every file whose
  name is not in FILES_TAIL_USED gets FILE_CONTENT_EXTENSION appended; every directory holding no directory gets
  the POPULATE_FILE_EXTENSION files added after its own entries);
- ``vehicle_control.py`` @ 6d8239f1758b6c68557124531a39201582501158 (get_outside_temperature_from_google,
  displayCarStatus, activateParkingBrake, estimate_distance, check_tire_pressure);
- ``trading_bot.py`` @ 33cd8a2ee96bfa8827f7b350facee10d038aa43d (get_stock_info, get_order_details, get_watchlist,
  get_transaction_history, get_available_stocks);
- ``travel_booking.py`` @ 322d3be4871cb30cef6719a11e20c129602574eb (_add_credit_cards, _add_booking_records,
  get_flight_cost, book_flight);
- ``message_api.py`` @ 94c8e974c8ba8dd655bfde0947be204ff5a320f2, ``posting_api.py`` @
  76951f398cbdd475351f5a274da298b534fa9306, ``ticket_api.py`` @ 527b31bf8cd6e244dfec902b4211b230c0d3c26b and
  ``math_api.py`` @ d858a2a934f8e692b1bd425f08bfc8e41017f2cd: no long-context switch at all (``_load_scenario``
  takes the flag and ignores it; math has no ``_load_scenario``).
"""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pytest

from tools.bfcl import BFCLSession

# long_context.py FILES_TAIL_USED, in upstream order.
FILES_TAIL_USED = [
    "log.txt",
    "report.txt",
    "report.csv",
    "DataSet1.csv",
    "file1.txt",
    "finance_report.txt",
    "config.py",
    "Q4_summary.doc",
    "file3.txt",
]
# long_context.py FILE_CONTENT_EXTENSION: its first and last words.
FILE_FILLER_START = "The company's financials for the year reflect a period of steady growth"
FILE_FILLER_END = "has positioned the company well for future growth and profitability."
# long_context.py POPULATE_FILE_EXTENSION: 30 names, first and last.
POPULATED_FIRST, POPULATED_LAST, POPULATED_COUNT = "image_344822349461074042.jpg", "image_1912245706439755759.jpg", 30


def _session(config: dict, classes: list[str], long_context: bool = True) -> BFCLSession:
    return BFCLSession(config, classes, long_context=long_context)


def _tree(files: dict[str, str], subdir: dict[str, str] | None = None) -> dict:
    contents: dict = {name: {"type": "file", "content": text} for name, text in files.items()}
    if subdir is not None:
        contents["inner"] = {
            "type": "directory",
            "contents": {name: {"type": "file", "content": text} for name, text in subdir.items()},
        }
    return {"GorillaFileSystem": {"root": {"workspace": {"type": "directory", "contents": contents}}}}


# --- GorillaFileSystem -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FILES_TAIL_USED)
def test_files_in_the_tail_list_keep_their_own_content(name: str) -> None:
    session = _session(_tree({name: "line one\nline two"}), ["GorillaFileSystem"])
    assert json.loads(session.execute(f"cat(file_name={name!r})")) == {"file_content": "line one\nline two"}
    assert json.loads(session.execute(f"tail(file_name={name!r}, lines=1)")) == {"last_lines": "line two"}


def test_every_other_file_gets_the_filler_appended_at_load() -> None:
    session = _session(_tree({"notes.txt": "mine\n", "DataSet1.csv": "a,b\n"}), ["GorillaFileSystem"])
    content = json.loads(session.execute("cat(file_name='notes.txt')"))["file_content"]
    assert content.startswith("mine\n" + FILE_FILLER_START) and content.endswith(FILE_FILLER_END)
    # tail sees the filler's last line; the whitelisted file stays as written (so diff shows the filler).
    assert json.loads(session.execute("tail(file_name='notes.txt', lines=1)"))["last_lines"].endswith(FILE_FILLER_END)
    assert json.loads(session.execute("cat(file_name='DataSet1.csv')")) == {"file_content": "a,b\n"}
    diff = json.loads(session.execute("diff(file_name1='DataSet1.csv', file_name2='notes.txt')"))["diff_lines"]
    assert diff == "- a,b\n+ mine"
    # Files written after loading get no filler.
    session.execute("touch(file_name='new.txt')")
    session.execute("echo(content='fresh', file_name='new.txt')")
    assert json.loads(session.execute("cat(file_name='new.txt')")) == {"file_content": "fresh"}


def test_config_py_keeps_its_content() -> None:
    session = _session(_tree({"config.py": "DEBUG = True"}), ["GorillaFileSystem"])
    assert json.loads(session.execute("cat(file_name='config.py')")) == {"file_content": "DEBUG = True"}


def test_only_directories_without_subdirectories_are_populated() -> None:
    session = _session(_tree({"top.txt": "x"}, subdir={"deep.txt": "y"}), ["GorillaFileSystem"])
    assert json.loads(session.execute("ls()"))["current_directory_content"] == ["top.txt", "inner"]
    session.execute("cd(folder='inner')")
    listing = json.loads(session.execute("ls()"))["current_directory_content"]
    assert listing[0] == "deep.txt" and len(listing) == 1 + POPULATED_COUNT
    assert listing[1] == POPULATED_FIRST and listing[-1] == POPULATED_LAST
    assert json.loads(session.execute(f"cat(file_name={POPULATED_FIRST!r})")) == {"file_content": ""}


def test_an_empty_root_directory_is_populated_and_off_mode_is_plain() -> None:
    config = {"GorillaFileSystem": {"root": {"workspace": {"type": "directory", "contents": {}}}}}
    listing = json.loads(_session(config, ["GorillaFileSystem"]).execute("ls()"))["current_directory_content"]
    assert len(listing) == POPULATED_COUNT
    plain = _session(_tree({"notes.txt": "mine"}), ["GorillaFileSystem"], long_context=False)
    assert json.loads(plain.execute("cat(file_name='notes.txt')")) == {"file_content": "mine"}


# --- VehicleControlAPI -------------------------------------------------------------------------------------------

# long_context.py LONG_WEATHER_EXTENSION: day keys in order, and the first and last day.
WEATHER_DAYS = [f"-{day}_day" for day in range(1, 16)]
WEATHER_FIRST_DAY = {
    "windSpeed": 15.0,
    "humidity": 75.0,
    "precipitation": 5.0,
    "uvIndex": 6,
    "visibility": 8.0,
    "airPressure": 1010.0,
    "dewPoint": 10.0,
}
WEATHER_LAST_DAY = {
    "windSpeed": 18.0,
    "humidity": 80.0,
    "precipitation": 1.0,
    "uvIndex": 6,
    "visibility": 9.0,
    "airPressure": 1008.0,
    "dewPoint": 9.0,
}


def test_google_temperature_in_long_context_is_the_weather_history_plus_the_reading() -> None:
    session = _session({}, ["VehicleControlAPI"])
    draws = random.Random(141053)  # vehicle_control.py DEFAULT_STATE random_seed
    for _ in range(2):
        text = session.execute("get_outside_temperature_from_google()")
        reply = json.loads(text)
        # The reading is assigned into the report last, so it is its last key (json.dumps keeps that order).
        assert list(reply) == [*WEATHER_DAYS, "outsideTemperature"]
        assert reply["-1_day"] == WEATHER_FIRST_DAY and reply["-15_day"] == WEATHER_LAST_DAY
        assert reply["-12_day"] == WEATHER_FIRST_DAY  # upstream repeats days 1-4 as 12-15
        assert reply["outsideTemperature"] == draws.uniform(-10.0, 40.0)
        assert text == json.dumps(reply)
    plain = _session({}, ["VehicleControlAPI"], long_context=False)
    assert json.loads(plain.execute("get_outside_temperature_from_google()")) == {
        "outsideTemperature": random.Random(141053).uniform(-10.0, 40.0)
    }


def test_vehicle_metadata_brake_instruction_and_cities() -> None:
    session = _session({}, ["VehicleControlAPI"])
    status = json.loads(session.execute("displayCarStatus(option='fuel')"))
    # CAR_STATUS_METADATA_EXTENSION, first under "metadata", before the option's fields.
    assert list(status) == ["metadata", "fuelLevel"]
    assert status["metadata"].startswith("Manufacturer: Audi; Model: A6; Year: 2024;")
    assert status["metadata"].endswith("RoofLightBar: Not Installed.")
    tires = json.loads(session.execute("check_tire_pressure()"))
    assert tires["car_info"] == status["metadata"]
    for mode in ("engage", "release"):
        brake = json.loads(session.execute(f"activateParkingBrake(mode={mode!r})"))
        # PARKING_BRAKE_INSTRUCTION, first key.
        assert list(brake) == ["parkingBrakeInstruction", "parkingBrakeStatus", "_parkingBrakeForce", "_slopeAngle"]
        assert brake["parkingBrakeInstruction"].startswith("The parking brake, also commonly referred to as")
        assert brake["parkingBrakeInstruction"].endswith("maintaining both your vehicle's safety and functionality.")
    for cities in ("cityA='83214', cityB='74532'", "cityA='x', cityB='y'"):
        reply = json.loads(session.execute(f"estimate_distance({cities})"))
        # INTERMEDIARY_CITIES, added to the distance and to the error alike.
        assert reply["intermediaryCities"][:3] == ["New Hamilton", "Jacksonville", "Fort Stoneport"]
        assert reply["intermediaryCities"][-1] == "Willowbrook Ridge"
    plain = _session({}, ["VehicleControlAPI"], long_context=False)
    assert json.loads(plain.execute("check_tire_pressure()"))["car_info"] == {}
    assert "intermediaryCities" not in json.loads(plain.execute("estimate_distance(cityA='83214', cityB='74532')"))


# --- TradingBot --------------------------------------------------------------------------------------------------


def test_trading_sectors_grow_by_both_extensions() -> None:
    session = _session({}, ["TradingBot"])
    tech = json.loads(session.execute("get_available_stocks(sector='Technology')"))["stock_list"]
    # sector map + TECHNOLOGY_EXTENSION (1000 symbols, 'AAPL' ... 'FDVU').
    assert tech[:5] == ["AAPL", "GOOG", "MSFT", "NVDA", "AAPL"] and tech[-1] == "FDVU" and len(tech) == 4 + 1000
    auto = json.loads(session.execute("get_available_stocks(sector='Automobile')"))["stock_list"]
    # sector map + AUTOMOBILE_EXTENSION (1000 symbols, 'TSLA', 'F', 'GM', 'UNUGJ' ... 'EM').
    assert auto[:7] == ["TSLA", "F", "GM", "TSLA", "F", "GM", "UNUGJ"]
    assert auto[-3:] == ["JSAL", "IFD", "EM"] and len(auto) == 3 + 1000
    assert json.loads(session.execute("get_available_stocks(sector='Energy')")) == {"stock_list": []}
    plain = _session({}, ["TradingBot"], long_context=False)
    assert json.loads(plain.execute("get_available_stocks(sector='Automobile')")) == {"stock_list": ["TSLA", "F", "GM"]}


def test_trading_replies_that_grow() -> None:
    session = _session({}, ["TradingBot"])
    stock = json.loads(session.execute("get_stock_info(symbol='AAPL')"))
    # MA_5_EXTENSION / MA_20_EXTENSION replace the two averages; price etc. stay.
    assert stock["price"] == 227.16 and stock["MA(5)"][:3] == [234.34, 212.46, 228.56]
    assert stock["MA(20)"][:3] == [225.08, 209.54, 242.23] and stock["MA(20)"][-1] == 246.63
    order = json.loads(session.execute("get_order_details(order_id=12345)"))
    # ORDER_DETAIL_EXTENSION formatted with the order's symbol, under "metadata".
    keys = list(order["metadata"])
    assert keys[0] == "company_overview" and keys[-1] == "sustainability_initiatives"
    assert "AAPL is one of the most influential companies in its sector." in order["metadata"]["company_overview"]
    session.execute("trading_login(username='u', password='p')")
    watch = session.execute("get_watchlist()")
    # the watch list + WATCH_LIST_EXTENSION, returned as a bare list (Python str, with its Ellipsis).
    assert watch.startswith("['NVDA', 'JHGUN', 'LMAT', 'YNK'") and "Ellipsis" in watch


def test_trading_transaction_history_grows_by_the_extension() -> None:
    session = _session({}, ["TradingBot"])
    session.execute("trading_login(username='u', password='p')")
    session.execute("fund_account(amount=100.0)")
    text = session.execute("get_transaction_history(start_date='2024-09-01', end_date='2024-09-03')")
    history = json.loads(text)["transaction_history"]
    # The account's own (filtered) history, then all of TRANSACTION_HISTORY_EXTENSION (1000 entries, unfiltered),
    # first and last entries as in long_context.py, keys in its order.
    assert len(history) == 1 + 1000 and history[0]["type"] == "deposit" and history[0]["amount"] == 100.0
    assert history[1] == {"type": "deposit", "amount": 9933.53, "timestamp": "2024-05-01 22:14:05.858817"}
    assert history[-1] == {"type": "withdrawal", "amount": 6787.08, "timestamp": "2024-03-22 13:33:04.863985"}
    assert list(history[1]) == ["type", "amount", "timestamp"]
    plain = _session({}, ["TradingBot"], long_context=False)
    plain.execute("trading_login(username='u', password='p')")
    assert json.loads(plain.execute("get_transaction_history()")) == {"transaction_history": []}


# --- TravelAPI ---------------------------------------------------------------------------------------------------


def test_travel_cards_and_bookings_are_merged_without_overwriting() -> None:
    own_card = {"card_number": "own", "expiration_date": "01/99", "cardholder_name": "Me", "balance": 1.0}
    config = {"TravelAPI": {"credit_card_list": {"1234567812345678": own_card}}}
    session = _session(config, ["TravelAPI"])
    cards = session.raw_state()["TravelAPI"]["credit_card_list"]
    # CREDIT_CARD_EXTENSION holds 22 cards; the config's card with the same id wins.
    assert len(cards) == 22 and cards["1234567812345678"] == own_card
    assert cards["1000000790000001"]["card_number"] == "1000000790000004"  # upstream's own typo, kept
    bookings = session.raw_state()["TravelAPI"]["booking_record"]
    # BOOKING_RECORD_EXTENSION: 16 bookings, booking_901 first, booking_400 last.
    assert len(bookings) == 16 and next(iter(bookings)) == "booking_901" and list(bookings)[-1] == "booking_400"
    assert bookings["booking_903"]["travel_cost"] == 1500.0


def test_travel_flight_costs_and_booking_history() -> None:
    session = _session({}, ["TravelAPI"])
    costs = json.loads(
        session.execute(
            "get_flight_cost(travel_from='SFO', travel_to='LAX', travel_date='2024-11-15', travel_class='first')"
        )
    )["travel_cost_list"]
    # every route of the base-cost table, in table order; digit sum 14 is even so x2, first class x5.
    assert costs[0] == 200 * 5 * 2 and costs[1] == 500 * 5 * 2 and costs[-1] == 220 * 5 * 2
    token = json.loads(
        session.execute(
            "authenticate_travel(client_id='c', client_secret='s', refresh_token='r', grant_type='read_write',"
            " user_first_name='A', user_last_name='B')"
        )
    )["access_token"]
    reply = json.loads(
        session.execute(
            f"book_flight(access_token={token!r}, card_id='1234567812345678', travel_date='2024-11-15',"
            " travel_from='SFO', travel_to='LAX', travel_class='economy')"
        )
    )
    # long context: booking_history is the whole booking record (16 extension bookings + the new one).
    assert reply["booking_status"] is True and len(reply["booking_history"]) == 17
    assert list(reply["booking_history"])[-1] == reply["booking_id"]


# --- MessageAPI, TwitterAPI, TicketAPI, MathAPI: no long-context switch ------------------------------------------

QUIET_CALLS = {
    "MessageAPI": [
        "list_users()",
        "message_login(user_id='USR001')",
        "send_message(receiver_id='USR002', message='hi')",
    ],
    "TwitterAPI": ["authenticate_twitter(username='john', password='john123')", "post_tweet(content='x')"],
    "TicketAPI": ["ticket_login(username='u', password='p')", "create_ticket(title='t', description='d')"],
    "MathAPI": ["add(a=1, b=2)", "mean(numbers=[1.0, 2.0])", "square_root(number=2, precision=5)"],
}


@pytest.mark.parametrize("class_name", sorted(QUIET_CALLS))
def test_classes_without_a_switch_answer_the_same(class_name: str) -> None:
    long, plain = _session({}, [class_name]), _session({}, [class_name], long_context=False)
    for call in QUIET_CALLS[class_name]:
        assert long.execute(call) == plain.execute(call), call


# --- the two long-context tasks the golden traces do not cover (long_context_35 and _91) -------------------------


def _task(task_id: str) -> dict:
    path = Path(__file__).resolve().parents[2] / "envs/function_calling/data/BFCL_v4_multi_turn_long_context.json.gz"
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        rows = (json.loads(line) for line in handle if line.strip())
        return next(row for row in rows if row["id"] == task_id)


def test_task_35_config_py_is_loaded_without_filler() -> None:
    task = _task("multi_turn_long_context_35")
    session = _session(task["initial_config"], task["involved_classes"])
    root = task["initial_config"]["GorillaFileSystem"]["root"]
    spec = next(iter(root.values()))["contents"]["projects"]["contents"]["deep_folder"]["contents"]["config.py"]
    session.execute("cd(folder='projects')")
    session.execute("cd(folder='deep_folder')")
    assert json.loads(session.execute("cat(file_name='config.py')")) == {"file_content": spec["content"]}


def test_task_91_weather_answer_is_the_long_report() -> None:
    task = _task("multi_turn_long_context_91")
    session = _session(task["initial_config"], task["involved_classes"])
    reply = json.loads(session.execute("get_outside_temperature_from_google()"))
    assert list(reply) == [*WEATHER_DAYS, "outsideTemperature"]
